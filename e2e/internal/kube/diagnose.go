package kube

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Diagnose writes what a failed test needs to be understood: every pod of ns
// with the state of each container (restarts, last termination and its
// message), the namespace's last events, and the last lines of each
// container's log.
func (c *Cluster) Diagnose(ctx context.Context, ns string, w io.Writer) {
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(w, "list pods in %s: %v\n", ns, err)
		return
	}
	tail := int64(30)
	for _, p := range pods.Items {
		fmt.Fprintf(w, "--- pod %s: %s, ready %t, IP %s, node %s\n", p.Name, p.Status.Phase, Ready(&p), p.Status.PodIP, p.Spec.NodeName)
		for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			fmt.Fprintf(w, "  %s: %s, restarts %d, last %s\n", s.Name, state(s.State), s.RestartCount, state(s.LastTerminationState))
		}
		for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			log, err := c.Logs(ctx, ns, p.Name, corev1.PodLogOptions{Container: s.Name, TailLines: &tail})
			if err != nil || log == "" {
				continue
			}
			fmt.Fprintf(w, "  [%s/%s]\n", p.Name, s.Name)
			for _, l := range strings.Split(strings.TrimRight(log, "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	ev, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	items := ev.Items
	if len(items) > 25 {
		items = items[len(items)-25:]
	}
	fmt.Fprintf(w, "--- events in %s (last %d)\n", ns, len(items))
	for _, e := range items {
		fmt.Fprintf(w, "  %s %s/%s %s: %s\n", e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
	}
}

func state(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.UTC().Format("15:04:05")
	case s.Waiting != nil:
		return "waiting (" + s.Waiting.Reason + ": " + s.Waiting.Message + ")"
	case s.Terminated != nil:
		return fmt.Sprintf("terminated (exit %d, %s: %q)", s.Terminated.ExitCode, s.Terminated.Reason, s.Terminated.Message)
	}
	return "-"
}
