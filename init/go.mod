module github.com/berth-vm/berth/init

go 1.26.0

require (
	github.com/berth-vm/berth/common v0.0.0
	github.com/goccy/go-yaml v1.19.2
	github.com/kdomanski/iso9660 v0.4.0
	golang.org/x/crypto v0.59.0
	gopkg.in/yaml.v3 v3.0.1
)

require golang.org/x/sys v0.50.0

replace github.com/berth-vm/berth/common => ../common
