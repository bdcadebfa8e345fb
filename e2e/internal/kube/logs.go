package kube

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Logs is the log of a container (as kubectl logs; opts picks the container,
// --previous, --tail, --since).
func (c *Cluster) Logs(ctx context.Context, ns, pod string, opts corev1.PodLogOptions) (string, error) {
	b, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &opts).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s -c %s (previous %t): %w", ns, pod, opts.Container, opts.Previous, err)
	}
	return string(b), nil
}

// Follow streams a container's log (as kubectl logs -f) into a buffer until
// the container ends or stop is called; stop returns what was read.
func (c *Cluster) Follow(ctx context.Context, ns, pod string, opts corev1.PodLogOptions) (stop func() string, err error) {
	opts.Follow = true
	ctx, cancel := context.WithCancel(ctx)
	rc, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &opts).Stream(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("follow the log of %s/%s -c %s: %w", ns, pod, opts.Container, err)
	}
	var mu sync.Mutex
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer rc.Close()
		chunk := make([]byte, 32*1024)
		for {
			n, err := rc.Read(chunk)
			mu.Lock()
			buf.Write(chunk[:n])
			mu.Unlock()
			if err != nil {
				return // io.EOF: the container ended; else stopped
			}
		}
	}()
	return func() string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}, nil
}
