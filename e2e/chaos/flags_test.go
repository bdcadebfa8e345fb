//go:build e2e

package chaos

import (
	"flag"
	"time"
)

// config is what ci/chaos/run.sh brought up and passes as flags.
type config struct {
	kubeconfig, helm, chart, namespace string
	sshKey, nodeNetNS                  string
	fileserver, fileserverURL, srv     string
	caches                             string
	rate                               string
	clusterDir, clusterUp              string
	ctr, containerd                    string
	out                                string
	bootTimeout                        time.Duration

	// bad input (badinput_test.go, privilege_test.go)
	badInputNS, badInputSrv, badInputURL string
	goodPod                              string
}

func registerFlags(fs *flag.FlagSet) *config {
	c := &config{}
	fs.StringVar(&c.kubeconfig, "kubeconfig", "/var/lib/berth-cluster/pki/admin.kubeconfig", "the cluster's kubeconfig")
	fs.StringVar(&c.helm, "helm", "helm", "the helm binary")
	fs.StringVar(&c.chart, "chart", "../../chart", "the chart's directory")
	fs.StringVar(&c.namespace, "namespace", "berth-chaos", "the namespace, made by the caller, with the file server pod in it")
	fs.StringVar(&c.sshKey, "ssh-key", "", "the private key; its public half (KEY.pub) goes into the values")
	fs.StringVar(&c.nodeNetNS, "node-netns", "/var/run/netns/berth-node", "the node's network namespace (SSH to pod IPs starts there)")
	fs.StringVar(&c.fileserver, "fileserver", "fileserver", "the paced HTTP server pod image-fetch downloads from")
	fs.StringVar(&c.fileserverURL, "fileserver-url", "", "its URL (http://IP:8080)")
	fs.StringVar(&c.srv, "srv", "", "the directory it serves: guest.qcow2, swap.qcow2 (a hard link of guest.qcow2), other.qcow2")
	fs.StringVar(&c.caches, "caches", "", "an empty directory for the hostPath image caches of the run (and the tmpfs of the full volume)")
	fs.StringVar(&c.rate, "rate", "16Mi", "the file server's pace (for messages)")
	fs.StringVar(&c.clusterDir, "cluster-dir", "/var/lib/berth-cluster", "the cluster's state directory (pids/kubelet)")
	fs.StringVar(&c.clusterUp, "cluster-up", "../../ci/cluster/up", "starts the kubelet again after it is killed")
	fs.StringVar(&c.ctr, "ctr", "ctr", "containerd's ctr")
	fs.StringVar(&c.containerd, "containerd", "/run/berth-cluster/containerd/containerd.sock", "the cluster's containerd socket")
	fs.StringVar(&c.out, "out", "../../out/chaos", "timings.tsv, results.tsv and faults.txt go here")
	fs.DurationVar(&c.bootTimeout, "boot-timeout", 480*time.Second, "one TCG boot")
	fs.StringVar(&c.badInputNS, "bad-input-namespace", "berth-bad-input", "TestBadInput's own namespace (deleted before and after)")
	fs.StringVar(&c.badInputSrv, "bad-input-srv", "", "the directory its file server serves: guest.qcow2, parent.qcow2, child.qcow2 (backed by parent.qcow2)")
	fs.StringVar(&c.badInputURL, "bad-input-url", "", "that file server's URL (http://IP:8080)")
	fs.StringVar(&c.goodPod, "good-pod", "", "NS/POD: a running VM to watch as the good VM (and TestLeastPrivilege's); empty: TestBadInput boots one")
	return c
}

var cfg = registerFlags(flag.CommandLine)
