package charttest

import (
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/kubernetes/pkg/apis/apps"
	appsinstall "k8s.io/kubernetes/pkg/apis/apps/install"
	appsvalidation "k8s.io/kubernetes/pkg/apis/apps/validation"
	"k8s.io/kubernetes/pkg/apis/core"
	coreinstall "k8s.io/kubernetes/pkg/apis/core/install"
	corevalidation "k8s.io/kubernetes/pkg/apis/core/validation"
	"k8s.io/kubernetes/pkg/capabilities"
)

// APIValidate runs the API server's own validation on rendered objects: each object decoded as
// the server gets it (decodeAsSent), given the server's defaults (the v1 defaulting functions),
// converted to the internal type and checked by k8s.io/kubernetes' pkg/apis/{core,apps}/validation
// (ValidateStatefulSet, ValidateConfigMap, ValidateServiceCreate, ValidatePodCreate,
// ValidatePersistentVolumeClaim, ValidateServiceAccount)
// — the code kube-apiserver runs on create, without admission and without the cluster's state
// (quotas, existing objects, a nodePort already taken). ns is the release's namespace. The
// server is taken to run with --allow-privileged=true, as the chart needs (and ci/cluster/up
// starts it).
func APIValidate(objs []Object, ns string) error {
	capabilities.Setup(true, 0)
	scheme := runtime.NewScheme()
	coreinstall.Install(scheme)
	appsinstall.Install(scheme)
	var errs []error
	for _, o := range objs {
		var list field.ErrorList
		var err error
		switch o.Kind {
		case "StatefulSet":
			var v appsv1.StatefulSet
			var in apps.StatefulSet
			if err = prepare(scheme, o, ns, &v, &v.ObjectMeta.Namespace, &in); err == nil {
				list = appsvalidation.ValidateStatefulSet(&in, appsvalidation.StatefulSetValidationOptions{}, corevalidation.PodValidationOptions{})
			}
		case "ConfigMap":
			var v corev1.ConfigMap
			var in core.ConfigMap
			if err = prepare(scheme, o, ns, &v, &v.ObjectMeta.Namespace, &in); err == nil {
				list = corevalidation.ValidateConfigMap(&in)
			}
		case "Service":
			var v corev1.Service
			var in core.Service
			if err = prepare(scheme, o, ns, &v, &v.ObjectMeta.Namespace, &in); err == nil {
				// what the server's IP allocator does before validation of a ClusterIP Service
				if in.Spec.IPFamilyPolicy == nil {
					p := core.IPFamilyPolicySingleStack
					in.Spec.IPFamilyPolicy = &p
				}
				if len(in.Spec.IPFamilies) == 0 {
					in.Spec.IPFamilies = []core.IPFamily{core.IPv4Protocol}
				}
				list = corevalidation.ValidateServiceCreate(&in)
			}
		case "Pod":
			var v corev1.Pod
			var in core.Pod
			if err = prepare(scheme, o, ns, &v, &v.ObjectMeta.Namespace, &in); err == nil {
				list = corevalidation.ValidatePodCreate(&in, corevalidation.PodValidationOptions{})
			}
		case "PersistentVolumeClaim":
			var v corev1.PersistentVolumeClaim
			var in core.PersistentVolumeClaim
			if err = prepare(scheme, o, ns, &v, &v.ObjectMeta.Namespace, &in); err == nil {
				list = corevalidation.ValidatePersistentVolumeClaim(&in, corevalidation.ValidationOptionsForPersistentVolumeClaim(&in, nil))
			}
		case "ServiceAccount":
			var v corev1.ServiceAccount
			var in core.ServiceAccount
			if err = prepare(scheme, o, ns, &v, &v.ObjectMeta.Namespace, &in); err == nil {
				list = corevalidation.ValidateServiceAccount(&in)
			}
		default:
			err = errors.New("a kind APIValidate does not know")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", o.Kind, o.Name, err))
		}
		for _, e := range list {
			errs = append(errs, fmt.Errorf("%s/%s: %s", o.Kind, o.Name, e.Error()))
		}
	}
	return errors.Join(errs...)
}

// prepare decodes o into v (a v1 type), sets its namespace, defaults it and converts it to in.
func prepare(scheme *runtime.Scheme, o Object, ns string, v runtime.Object, vns *string, in any) error {
	if err := decodeAsSent(o.YAML, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	*vns = ns
	scheme.Default(v)
	if err := scheme.Convert(v, in, nil); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	return nil
}
