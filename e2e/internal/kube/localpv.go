package kube

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LocalStorage is a StorageClass of a test's own (no provisioner, bound when
// the pod is scheduled, Retain) with Count local PVs of Size on Node, each a
// directory Dir/1 ... Dir/Count of this machine, labelled Label=true: the
// shared pool of the cluster stays for the others.
type LocalStorage struct {
	Class string
	Label string
	Node  string
	Dir   string
	Count int
	Size  string
}

// Create makes the directories (mode 0777: the stages run as the VM's uid),
// the StorageClass and the PVs.
func (s LocalStorage) Create(ctx context.Context, c *Cluster) error {
	size, err := resource.ParseQuantity(s.Size)
	if err != nil {
		return fmt.Errorf("local storage %s: size: %w", s.Class, err)
	}
	binding := storagev1.VolumeBindingWaitForFirstConsumer
	retain := corev1.PersistentVolumeReclaimRetain
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: s.Class},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: &binding,
		ReclaimPolicy:     &retain,
	}
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("storage class %s: %w", s.Class, err)
	}
	for i := 1; i <= s.Count; i++ {
		dir := filepath.Join(s.Dir, strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return fmt.Errorf("local storage %s: %w", s.Class, err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return fmt.Errorf("local storage %s: %w", s.Class, err)
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", s.Class, i), Labels: map[string]string{s.Label: "true"}},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: retain,
				StorageClassName:              s.Class,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
				NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{s.Node}}},
				}}}},
			},
		}
		if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("persistent volume %s: %w", pv.Name, err)
		}
	}
	return nil
}

// Delete removes the PVs (the claims on them must be gone first: a bound
// PV's protection holds it), the StorageClass and the directories. What is
// already gone is no error.
func (s LocalStorage) Delete(ctx context.Context, c *Cluster) error {
	var first error
	keep := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) && first == nil {
			first = err
		}
	}
	keep(c.Client.CoreV1().PersistentVolumes().DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: s.Label + "=true"}))
	keep(c.Client.StorageV1().StorageClasses().Delete(ctx, s.Class, metav1.DeleteOptions{}))
	keep(os.RemoveAll(s.Dir))
	if first != nil {
		return fmt.Errorf("delete local storage %s: %w", s.Class, first)
	}
	return nil
}
