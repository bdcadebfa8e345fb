package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berth-vm/berth/e2e/internal/wait"
)

// ContainerStatus is the status of the container called name, whether it is
// an init container, a sidecar or a main container; false when it has none yet.
func ContainerStatus(pod *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, s := range list {
			if s.Name == name {
				return s, true
			}
		}
	}
	return corev1.ContainerStatus{}, false
}

// RestartCount is the container's restart count (0 when it has no status yet).
func RestartCount(pod *corev1.Pod, container string) int32 {
	s, _ := ContainerStatus(pod, container)
	return s.RestartCount
}

// Ready reports the pod's Ready condition.
func Ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Env is the value of the variable name in the spec of the container called
// container ("" and false when it is not set there).
func Env(pod *corev1.Pod, container, name string) (string, bool) {
	for _, c := range pod.Spec.Containers {
		if c.Name != container {
			continue
		}
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value, true
			}
		}
	}
	return "", false
}

// ClaimNames are the PVCs the pod mounts, in the order of its volumes.
func ClaimNames(pod *corev1.Pod) []string {
	var names []string
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			names = append(names, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return names
}

// Summary is one line per pod of ns: name, phase, ready, restarts (for progress lines).
func (c *Cluster) Summary(ctx context.Context, ns string) string {
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "list pods: " + err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		var restarts int32
		for _, s := range p.Status.ContainerStatuses {
			restarts += s.RestartCount
		}
		fmt.Fprintf(&b, "%s %s ready=%t restarts=%d; ", p.Name, p.Status.Phase, Ready(&p), restarts)
	}
	return strings.TrimSuffix(b.String(), "; ")
}

// WaitPod polls the pod ns/name until cond holds for it, for at most timeout.
// A pod that does not exist (yet) is passed to cond as nil.
func (c *Cluster) WaitPod(ctx context.Context, ns, name, what string, timeout time.Duration, logf wait.Logf,
	cond func(*corev1.Pod) (bool, string)) (*corev1.Pod, error) {
	var last *corev1.Pod
	_, err := wait.For(ctx, what, timeout, time.Second, logf, func(ctx context.Context) (bool, string, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			p = nil
		case err != nil:
			return false, "get pod: " + err.Error(), nil
		}
		ok, seen := cond(p)
		last = p
		return ok, seen, nil
	})
	return last, err
}

// DeletePod deletes the pod and waits until the pod of that uid is gone (as
// kubectl delete --wait). It returns the uid deleted.
func (c *Cluster) DeletePod(ctx context.Context, ns, name string, timeout time.Duration, logf wait.Logf) (types.UID, error) {
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	uid := p.UID
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
		return uid, fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	_, err = c.WaitPod(ctx, ns, name, "pod "+name+" (uid "+string(uid)+") gone", timeout, logf, func(p *corev1.Pod) (bool, string) {
		if p == nil || p.UID != uid {
			return true, "gone"
		}
		return false, fmt.Sprintf("%s, deleting since %s", p.Status.Phase, p.DeletionTimestamp)
	})
	return uid, err
}
