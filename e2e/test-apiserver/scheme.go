package main

// The scheme for the built-in groups this server serves (core/v1, apps/v1, coordination.k8s.io/v1,
// discovery.k8s.io/v1, rbac.authorization.k8s.io/v1, policy/v1).
//
// Kubernetes' internal API types live in k8s.io/kubernetes, which Debian does not package. So the
// versioned k8s.io/api Go types are registered a second time as each group's internal version:
// every conversion between "internal" and v1 is then the identity (the scheme sees that the Go
// type already belongs to the target version and only rewrites apiVersion/kind).

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

var (
	// kubeScheme holds external + identity-internal versions; used for serving and storage.
	kubeScheme = runtime.NewScheme()
	kubeCodecs = serializer.NewCodecFactory(kubeScheme)
	// namerScheme holds only the external versions; used to name OpenAPI definitions (so that
	// no x-kubernetes-group-version-kind with version __internal is published).
	namerScheme = runtime.NewScheme()
)

type groupTypes struct {
	gv    schema.GroupVersion
	types []runtime.Object
}

func builtinGroups() []groupTypes {
	return []groupTypes{
		{corev1.SchemeGroupVersion, []runtime.Object{
			&corev1.Namespace{}, &corev1.NamespaceList{},
			&corev1.ConfigMap{}, &corev1.ConfigMapList{},
			&corev1.Service{}, &corev1.ServiceList{},
			&corev1.Event{}, &corev1.EventList{},
			&corev1.Secret{}, &corev1.SecretList{},
			&corev1.ServiceAccount{}, &corev1.ServiceAccountList{},
		}},
		{appsv1.SchemeGroupVersion, []runtime.Object{
			&appsv1.Deployment{}, &appsv1.DeploymentList{},
		}},
		{coordinationv1.SchemeGroupVersion, []runtime.Object{
			&coordinationv1.Lease{}, &coordinationv1.LeaseList{},
		}},
		{discoveryv1.SchemeGroupVersion, []runtime.Object{
			&discoveryv1.EndpointSlice{}, &discoveryv1.EndpointSliceList{},
		}},
		{rbacv1.SchemeGroupVersion, []runtime.Object{
			&rbacv1.Role{}, &rbacv1.RoleList{},
			&rbacv1.RoleBinding{}, &rbacv1.RoleBindingList{},
			&rbacv1.ClusterRole{}, &rbacv1.ClusterRoleList{},
			&rbacv1.ClusterRoleBinding{}, &rbacv1.ClusterRoleBindingList{},
		}},
		{policyv1.SchemeGroupVersion, []runtime.Object{
			&policyv1.PodDisruptionBudget{}, &policyv1.PodDisruptionBudgetList{},
		}},
	}
}

func init() {
	for _, g := range builtinGroups() {
		kubeScheme.AddKnownTypes(g.gv, g.types...)
		metav1.AddToGroupVersion(kubeScheme, g.gv)
		internal := schema.GroupVersion{Group: g.gv.Group, Version: runtime.APIVersionInternal}
		kubeScheme.AddKnownTypes(internal, g.types...)
		// one call per group: several groups in one call is rejected
		if err := kubeScheme.SetVersionPriority(g.gv); err != nil {
			panic(err)
		}

		namerScheme.AddKnownTypes(g.gv, g.types...)
	}
	// Field selectors on Events (kubectl get events --field-selector involvedObject.name=x).
	if err := kubeScheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Event"),
		func(label, value string) (string, string, error) {
			if _, ok := eventFieldSet(&corev1.Event{})[label]; ok {
				return label, value, nil
			}
			return "", "", fmt.Errorf("field label not supported: %s", label)
		}); err != nil {
		panic(err)
	}
	// Secrets are selectable by type (kubectl get secrets --field-selector type=Opaque).
	if err := kubeScheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Secret"),
		func(label, value string) (string, string, error) {
			switch label {
			case "metadata.name", "metadata.namespace", "type":
				return label, value, nil
			}
			return "", "", fmt.Errorf("field label not supported: %s", label)
		}); err != nil {
		panic(err)
	}
	if err := kubeScheme.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Namespace"),
		func(label, value string) (string, string, error) {
			switch label {
			case "metadata.name", "status.phase":
				return label, value, nil
			}
			return "", "", fmt.Errorf("field label not supported: %s", label)
		}); err != nil {
		panic(err)
	}
}

// eventFieldSet is the set of fields an Event can be selected by (as in Kubernetes).
func eventFieldSet(e *corev1.Event) map[string]string {
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	return map[string]string{
		"metadata.name":                  e.Name,
		"metadata.namespace":             e.Namespace,
		"involvedObject.kind":            e.InvolvedObject.Kind,
		"involvedObject.namespace":       e.InvolvedObject.Namespace,
		"involvedObject.name":            e.InvolvedObject.Name,
		"involvedObject.uid":             string(e.InvolvedObject.UID),
		"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
		"reason":                         e.Reason,
		"reportingComponent":             e.ReportingController,
		"source":                         source,
		"type":                           e.Type,
	}
}
