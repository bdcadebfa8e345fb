package kube

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Forward is a running port-forward (as kubectl port-forward) from a port on
// this machine's 127.0.0.1 to a port of a pod.
type Forward struct {
	Local uint16 // the port listening on 127.0.0.1
	stop  chan struct{}
	done  chan error
	once  sync.Once
	out   *bytes.Buffer
}

// PortForward listens on 127.0.0.1:local (0: a free port) and forwards each
// connection to remote in ns/pod until Close.
func (c *Cluster) PortForward(ns, pod string, local, remote uint16) (*Forward, error) {
	transport, upgrader, err := spdy.RoundTripperFor(c.Config)
	if err != nil {
		return nil, fmt.Errorf("port-forward transport: %w", err)
	}
	url := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	f := &Forward{stop: make(chan struct{}), done: make(chan error, 1), out: &bytes.Buffer{}}
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("%d:%d", local, remote)},
		f.stop, ready, f.out, f.out)
	if err != nil {
		return nil, fmt.Errorf("port-forward %s/%s %d:%d: %w", ns, pod, local, remote, err)
	}
	go func() { f.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-f.done:
		return nil, fmt.Errorf("port-forward %s/%s %d:%d: %w (%s)", ns, pod, local, remote, err, strings.TrimSpace(f.out.String()))
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		f.Close()
		return nil, fmt.Errorf("port-forward %s/%s: the local port: %v", ns, pod, err)
	}
	f.Local = ports[0].Local
	return f, nil
}

// Close stops the forward and waits for it to end.
func (f *Forward) Close() {
	f.once.Do(func() {
		close(f.stop)
		<-f.done
	})
}
