package kube

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berth-vm/berth/e2e/internal/wait"
)

// Claim is a PVC as the disk tests read it: its class, its mode, what it
// asks for, what it has, and the PV it is bound to.
type Claim struct {
	Name, Class, Volume string
	Mode                corev1.PersistentVolumeMode
	Request, Capacity   int64
	Phase               corev1.PersistentVolumeClaimPhase
	Annotations         map[string]string
}

// GetClaim reads the PVC ns/name.
func (c *Cluster) GetClaim(ctx context.Context, ns, name string) (Claim, error) {
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Claim{}, fmt.Errorf("pvc %s/%s: %w", ns, name, err)
	}
	cl := Claim{Name: name, Volume: pvc.Spec.VolumeName, Phase: pvc.Status.Phase, Annotations: pvc.Annotations,
		Mode: corev1.PersistentVolumeFilesystem}
	if pvc.Spec.StorageClassName != nil {
		cl.Class = *pvc.Spec.StorageClassName
	}
	if pvc.Spec.VolumeMode != nil {
		cl.Mode = *pvc.Spec.VolumeMode
	}
	cl.Request = bytesOf(pvc.Spec.Resources.Requests)
	cl.Capacity = bytesOf(pvc.Status.Capacity)
	return cl, nil
}

func bytesOf(l corev1.ResourceList) int64 {
	q, ok := l[corev1.ResourceStorage]
	if !ok {
		return 0
	}
	return q.Value()
}

// WaitClaimCapacity waits until the PVC is bound with a capacity of at least
// min bytes (a resize done by the CSI resizer and the kubelet).
func (c *Cluster) WaitClaimCapacity(ctx context.Context, ns, name string, min int64, timeout time.Duration, logf wait.Logf) (Claim, error) {
	var last Claim
	_, err := wait.For(ctx, fmt.Sprintf("pvc %s with a capacity of %d bytes", name, min), timeout, 2*time.Second, logf,
		func(ctx context.Context) (bool, string, error) {
			cl, err := c.GetClaim(ctx, ns, name)
			if err != nil {
				return false, err.Error(), nil
			}
			last = cl
			return cl.Phase == corev1.ClaimBound && cl.Capacity >= min,
				fmt.Sprintf("%s, request %s, capacity %s", cl.Phase, quantity(cl.Request), quantity(cl.Capacity)), nil
		})
	return last, err
}

func quantity(b int64) string { return resource.NewQuantity(b, resource.BinarySI).String() }

// VolumeRoot is the directory on this machine (the single node) that holds
// the root of the PV behind a Filesystem claim: a local or hostPath PV's
// path, or for a CSI volume the kubelet's publish directory for the pod of
// uid podUID (kubeletDir/pods/UID/volumes/kubernetes.io~csi/PV/mount).
func (c *Cluster) VolumeRoot(ctx context.Context, pvName, kubeletDir, podUID string) (string, error) {
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("pv %s: %w", pvName, err)
	}
	switch s := pv.Spec.PersistentVolumeSource; {
	case s.Local != nil:
		return s.Local.Path, nil
	case s.HostPath != nil:
		return s.HostPath.Path, nil
	case s.CSI != nil:
		return filepath.Join(kubeletDir, "pods", podUID, "volumes", "kubernetes.io~csi", pvName, "mount"), nil
	}
	return "", fmt.Errorf("pv %s: neither local, hostPath nor CSI: its directory on the node is unknown", pvName)
}
