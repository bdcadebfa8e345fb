// Command envdump prints its environment, one variable a line, and exits 3:
// the binary stagetest's own test builds.
package main

import (
	"fmt"
	"os"
)

func main() {
	for _, kv := range os.Environ() {
		fmt.Println(kv)
	}
	os.Exit(3)
}
