package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// Exec runs cmd in the container of ns/pod (as kubectl exec, over SPDY) and
// returns its standard output; a failure carries its standard error.
func (c *Cluster) Exec(ctx context.Context, ns, pod, container string, cmd ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	if err := c.Stream(ctx, ns, pod, container, nil, &stdout, &stderr, cmd...); err != nil {
		return stdout.String(), fmt.Errorf("exec %s in %s/%s -c %s: %w (stderr: %s)",
			strings.Join(cmd, " "), ns, pod, container, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Stream runs cmd in the container with the given streams (stdin may be nil).
func (c *Cluster) Stream(ctx context.Context, ns, pod, container string, stdin io.Reader, stdout, stderr io.Writer, cmd ...string) error {
	req := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   cmd,
			Stdin:     stdin != nil,
			Stdout:    stdout != nil,
			Stderr:    stderr != nil,
		}, scheme.ParameterCodec)
	exec, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
	if err != nil {
		return fmt.Errorf("exec executor: %w", err)
	}
	return exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}
