//go:build e2e

package cluster

import (
	"flag"
	"time"
)

// config is what ci/e2e/cluster-test.sh brought up and passes as flags.
type config struct {
	kubeconfig, helm, kubectl, chart, values string
	namespace, release, cni                  string
	full                                     bool
	sshKey, nodeNetNS                        string
	marker, consolePassword                  string
	fileserver, imagePath                    string
	out                                      string
	bootTimeout                              time.Duration
	serialConsole, webConsole, node          string

	// the disks (disks_test.go, legacy_test.go)
	ctr, containerd, clusterDir       string
	diskClass, smallClass, localClass string
	legacyChart                       string
}

func registerFlags(fs *flag.FlagSet) *config {
	c := &config{}
	fs.StringVar(&c.kubeconfig, "kubeconfig", "/var/lib/berth-cluster/pki/admin.kubeconfig", "the cluster's kubeconfig")
	fs.StringVar(&c.helm, "helm", "helm", "the helm binary")
	fs.StringVar(&c.kubectl, "kubectl", "kubectl", "the kubectl binary (the serial console is used through kubectl attach -it, as a person does)")
	fs.StringVar(&c.chart, "chart", "../../chart", "the chart's directory")
	fs.StringVar(&c.values, "values", "", "the rendered values of vm1 (ci/e2e/values.yaml.in)")
	fs.StringVar(&c.namespace, "namespace", "berth-e2e", "the namespace, made by the caller, with the file server pod in it")
	fs.StringVar(&c.release, "release", "e2e", "the Helm release")
	fs.StringVar(&c.cni, "cni", "bridge", "the cluster's CNI setup: bridge (10.244.0.0/24) or calico-like (10.244.1.0/24)")
	fs.BoolVar(&c.full, "full", false, "the full scenario: delete pod, helm upgrade of the memory, a second VM")
	fs.StringVar(&c.sshKey, "ssh-key", "", "the private key whose public half is in the values")
	fs.StringVar(&c.nodeNetNS, "node-netns", "/var/run/netns/berth-node", "the node's network namespace (SSH and TCP to pod IPs start there)")
	fs.StringVar(&c.marker, "marker", "", "the word the values' user-data writes to /var/tmp/berth-e2e-marker")
	fs.StringVar(&c.consolePassword, "console-password", "", "the guest user's password set by the values (serial console login)")
	fs.StringVar(&c.fileserver, "fileserver", "fileserver", "the HTTP server pod (in the namespace) image-fetch downloads from")
	fs.StringVar(&c.imagePath, "image-path", "", "the URL path of the guest image on the file server (/NAME)")
	fs.StringVar(&c.out, "out", "../../out/e2e", "where transcripts, screenshots and timings.tsv go")
	fs.DurationVar(&c.bootTimeout, "boot-timeout", 480*time.Second, "one TCG boot with the image download")
	fs.StringVar(&c.serialConsole, "serial-console", "../../ci/e2e/serial-console.py", "the serial console driver")
	fs.StringVar(&c.webConsole, "web-console", "../../ci/console/web-console.mjs", "the web console's browser check")
	fs.StringVar(&c.node, "node", "node", "node.js for the web console check")
	fs.StringVar(&c.ctr, "ctr", "ctr", "containerd's ctr (the vm container's process, to read its volumes from the node)")
	fs.StringVar(&c.containerd, "containerd", "/run/berth-cluster/containerd/containerd.sock", "the cluster's containerd socket")
	fs.StringVar(&c.clusterDir, "cluster-dir", "/var/lib/berth-cluster", "the cluster's state directory (the kubelet's under kubelet/)")
	fs.StringVar(&c.diskClass, "disk-class", "berth-csi", "the StorageClass with expansion and Block volumes (the cluster's CSI driver)")
	fs.StringVar(&c.smallClass, "small-class", "berth-small", "the StorageClass of the static 1 GiB ext4 PV the full-volume check fills")
	fs.StringVar(&c.localClass, "local-class", "berth-local", "a StorageClass without expansion (static root-owned hostPath PVs)")
	fs.StringVar(&c.legacyChart, "legacy-chart", "", "the chart before issue 18 (git archive 54983df chart): TestDiskMigration; empty: skipped")
	return c
}

var cfg = registerFlags(flag.CommandLine)
