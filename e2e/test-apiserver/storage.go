package main

// Registry stores for the built-in resources: one generic etcd-backed registry store per resource,
// with a small strategy (object-metadata validation, namespace scoping, status handling).

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// strategy is a small create/update/delete strategy shared by all built-in resources.
type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator

	namespaced bool
	nameFn     apivalidation.ValidateNameFunc
	// optional hooks
	prepareCreate func(obj runtime.Object)
	prepareUpdate func(obj, old runtime.Object)
	// validate / validateUpdate add a resource's own spec checks to the object-meta validation
	validate       func(obj runtime.Object) field.ErrorList
	validateUpdate func(obj, old runtime.Object) field.ErrorList
	resetFields    map[fieldpath.APIVersion]*fieldpath.Set
}

func (s strategy) NamespaceScoped() bool { return s.namespaced }

func (s strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	if s.prepareCreate != nil {
		s.prepareCreate(obj)
	}
}

func (s strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	if s.prepareUpdate != nil {
		s.prepareUpdate(obj, old)
	}
}

func (s strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	m, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := apivalidation.ValidateObjectMetaAccessor(m, s.namespaced, s.nameFn, field.NewPath("metadata"))
	if s.validate != nil {
		errs = append(errs, s.validate(obj)...)
	}
	return errs
}

func (s strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	m, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	o, err := meta.Accessor(old)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	errs := apivalidation.ValidateObjectMetaAccessorUpdate(m, o, field.NewPath("metadata"))
	if s.validate != nil {
		errs = append(errs, s.validate(obj)...)
	}
	if s.validateUpdate != nil {
		errs = append(errs, s.validateUpdate(obj, old)...)
	}
	return errs
}

func (s strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }
func (s strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}
func (s strategy) Canonicalize(obj runtime.Object) {}
func (s strategy) AllowCreateOnUpdate() bool       { return false }
func (s strategy) AllowUnconditionalUpdate() bool  { return true }
func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return s.resetFields
}

// namedStore adds short names and categories to a store (kubectl get svc / deploy / cm ...).
type namedStore struct {
	*genericregistry.Store
	shortNames []string
	categories []string
}

var (
	_ rest.ShortNamesProvider = namedStore{}
	_ rest.CategoriesProvider = namedStore{}
)

func (n namedStore) ShortNames() []string { return n.shortNames }
func (n namedStore) Categories() []string { return n.categories }

// statusREST serves the /status subresource of a store: updates go through a strategy that keeps
// everything but the status.
type statusREST struct {
	store *genericregistry.Store
	newFn func() runtime.Object
}

var (
	_ rest.Patcher             = &statusREST{}
	_ rest.ResetFieldsStrategy = &statusREST{}
)

func (r *statusREST) New() runtime.Object { return r.newFn() }
func (r *statusREST) Destroy()            {}
func (r *statusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}
func (r *statusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo,
	createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc,
	forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	// subresources never create
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}
func (r *statusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}
func (r *statusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}

type resourceSpec struct {
	gv         schema.GroupVersion
	resource   string
	singular   string
	namespaced bool
	newFn      func() runtime.Object
	newListFn  func() runtime.Object
	nameFn     apivalidation.ValidateNameFunc
	shortNames []string
	categories []string
	attrFunc   func(obj runtime.Object) (labels.Set, fields.Set, error)

	prepareCreate  func(obj runtime.Object)
	prepareUpdate  func(obj, old runtime.Object)
	validate       func(obj runtime.Object) field.ErrorList
	validateUpdate func(obj, old runtime.Object) field.ErrorList
	resetFields    []fieldpath.Path

	// status subresource
	withStatus          bool
	statusPrepareUpdate func(obj, old runtime.Object)
	statusResetFields   []fieldpath.Path
}

func resetSet(gv schema.GroupVersion, paths []fieldpath.Path) map[fieldpath.APIVersion]*fieldpath.Set {
	if len(paths) == 0 {
		return nil
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{fieldpath.APIVersion(gv.String()): fieldpath.NewSet(paths...)}
}

// newStores builds the registry store (and /status store) for one resource.
func newStores(spec resourceSpec, optsGetter generic.RESTOptionsGetter) (map[string]rest.Storage, error) {
	gr := schema.GroupResource{Group: spec.gv.Group, Resource: spec.resource}
	main := strategy{
		ObjectTyper:    kubeScheme,
		NameGenerator:  names.SimpleNameGenerator,
		namespaced:     spec.namespaced,
		nameFn:         spec.nameFn,
		prepareCreate:  spec.prepareCreate,
		prepareUpdate:  spec.prepareUpdate,
		validate:       spec.validate,
		validateUpdate: spec.validateUpdate,
		resetFields:    resetSet(spec.gv, spec.resetFields),
	}
	store := &genericregistry.Store{
		NewFunc:                   spec.newFn,
		NewListFunc:               spec.newListFn,
		DefaultQualifiedResource:  gr,
		SingularQualifiedResource: schema.GroupResource{Group: spec.gv.Group, Resource: spec.singular},
		CreateStrategy:            main,
		UpdateStrategy:            main,
		DeleteStrategy:            main,
		ResetFieldsStrategy:       main,
		TableConvertor:            rest.NewDefaultTableConvertor(gr),
	}
	if t := tableFor(spec.resource); t != nil {
		store.TableConvertor = t
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: spec.attrFunc}); err != nil {
		return nil, fmt.Errorf("store for %s: %w", gr, err)
	}
	out := map[string]rest.Storage{
		spec.resource: namedStore{Store: store, shortNames: spec.shortNames, categories: spec.categories},
	}
	if spec.withStatus {
		st := strategy{
			ObjectTyper:   kubeScheme,
			NameGenerator: names.SimpleNameGenerator,
			namespaced:    spec.namespaced,
			nameFn:        spec.nameFn,
			prepareUpdate: spec.statusPrepareUpdate,
			resetFields:   resetSet(spec.gv, spec.statusResetFields),
		}
		statusStore := *store
		statusStore.UpdateStrategy = st
		statusStore.ResetFieldsStrategy = st
		statusStore.CreateStrategy = nil
		out[spec.resource+"/status"] = &statusREST{store: &statusStore, newFn: spec.newFn}
	}
	return out, nil
}

func path(p ...string) fieldpath.Path {
	out := make([]interface{}, len(p))
	for i, s := range p {
		out[i] = s
	}
	return fieldpath.MakePathOrDie(out...)
}

// ---------------------------------------------------------------------------------------------
// The resources.

func coreResources() []resourceSpec {
	gv := corev1.SchemeGroupVersion
	return []resourceSpec{
		{
			gv: gv, resource: "namespaces", singular: "namespace", namespaced: false,
			newFn:      func() runtime.Object { return &corev1.Namespace{} },
			newListFn:  func() runtime.Object { return &corev1.NamespaceList{} },
			nameFn:     apivalidation.ValidateNamespaceName,
			shortNames: []string{"ns"},
			attrFunc: func(obj runtime.Object) (labels.Set, fields.Set, error) {
				ns, ok := obj.(*corev1.Namespace)
				if !ok {
					return nil, nil, fmt.Errorf("not a namespace: %T", obj)
				}
				return labels.Set(ns.Labels), fields.Set{"metadata.name": ns.Name, "status.phase": string(ns.Status.Phase)}, nil
			},
			prepareCreate: func(obj runtime.Object) {
				ns := obj.(*corev1.Namespace)
				ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
				if ns.Labels == nil {
					ns.Labels = map[string]string{}
				}
				ns.Labels[corev1.LabelMetadataName] = ns.Name
			},
			prepareUpdate: func(obj, old runtime.Object) {
				ns, o := obj.(*corev1.Namespace), old.(*corev1.Namespace)
				ns.Status = o.Status
				if ns.Labels == nil {
					ns.Labels = map[string]string{}
				}
				ns.Labels[corev1.LabelMetadataName] = ns.Name
			},
			resetFields: []fieldpath.Path{path("status")},
		},
		{
			gv: gv, resource: "configmaps", singular: "configmap", namespaced: true,
			newFn:      func() runtime.Object { return &corev1.ConfigMap{} },
			newListFn:  func() runtime.Object { return &corev1.ConfigMapList{} },
			nameFn:     apivalidation.NameIsDNSSubdomain,
			shortNames: []string{"cm"},
		},
		{
			gv: gv, resource: "services", singular: "service", namespaced: true,
			newFn:      func() runtime.Object { return &corev1.Service{} },
			newListFn:  func() runtime.Object { return &corev1.ServiceList{} },
			nameFn:     apivalidation.NameIsDNS1035Label,
			shortNames: []string{"svc"},
			categories: []string{"all"},
			prepareCreate: func(obj runtime.Object) {
				obj.(*corev1.Service).Status = corev1.ServiceStatus{}
			},
			prepareUpdate: func(obj, old runtime.Object) {
				obj.(*corev1.Service).Status = old.(*corev1.Service).Status
			},
			resetFields: []fieldpath.Path{path("status")},
			withStatus:  true,
			statusPrepareUpdate: func(obj, old runtime.Object) {
				s, o := obj.(*corev1.Service), old.(*corev1.Service)
				s.Spec = o.Spec
				s.Labels = o.Labels
			},
			statusResetFields: []fieldpath.Path{path("spec"), path("metadata", "labels")},
		},
		{
			gv: gv, resource: "events", singular: "event", namespaced: true,
			newFn:      func() runtime.Object { return &corev1.Event{} },
			newListFn:  func() runtime.Object { return &corev1.EventList{} },
			nameFn:     apivalidation.NameIsDNSSubdomain,
			shortNames: []string{"ev"},
			attrFunc: func(obj runtime.Object) (labels.Set, fields.Set, error) {
				e, ok := obj.(*corev1.Event)
				if !ok {
					return nil, nil, fmt.Errorf("not an event: %T", obj)
				}
				return labels.Set(e.Labels), fields.Set(eventFieldSet(e)), nil
			},
		},
		secretSpec(),
		serviceAccountSpec(),
	}
}

// Secrets: stringData is merged into data (kube-apiserver does it when it converts to its internal
// type), an empty type is Opaque (v1 defaulting), keys are checked as kube-apiserver checks them,
// the type is immutable, and an immutable Secret keeps its data.
func secretSpec() resourceSpec {
	return resourceSpec{
		gv: corev1.SchemeGroupVersion, resource: "secrets", singular: "secret", namespaced: true,
		newFn:     func() runtime.Object { return &corev1.Secret{} },
		newListFn: func() runtime.Object { return &corev1.SecretList{} },
		nameFn:    apivalidation.NameIsDNSSubdomain,
		attrFunc: func(obj runtime.Object) (labels.Set, fields.Set, error) {
			s, ok := obj.(*corev1.Secret)
			if !ok {
				return nil, nil, fmt.Errorf("not a secret: %T", obj)
			}
			return labels.Set(s.Labels), fields.Set{"metadata.name": s.Name, "metadata.namespace": s.Namespace, "type": string(s.Type)}, nil
		},
		prepareCreate: func(obj runtime.Object) { normalizeSecret(obj.(*corev1.Secret)) },
		prepareUpdate: func(obj, old runtime.Object) { normalizeSecret(obj.(*corev1.Secret)) },
		validate: func(obj runtime.Object) field.ErrorList {
			return validateSecret(obj.(*corev1.Secret))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			s, o := obj.(*corev1.Secret), old.(*corev1.Secret)
			var errs field.ErrorList
			if s.Type != o.Type {
				errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
			}
			if o.Immutable != nil && *o.Immutable {
				if s.Immutable == nil || !*s.Immutable {
					errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
				}
				if !apiequality.Semantic.DeepEqual(s.Data, o.Data) {
					errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
				}
			}
			return errs
		},
	}
}

func normalizeSecret(s *corev1.Secret) {
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
}

func validateSecret(s *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	dataPath := field.NewPath("data")
	total := 0
	for k, v := range s.Data {
		for _, msg := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(dataPath.Key(k), k, msg))
		}
		total += len(v)
	}
	if total > corev1.MaxSecretSize {
		errs = append(errs, field.TooLong(dataPath, "", corev1.MaxSecretSize))
	}
	need := func(keys ...string) {
		for _, k := range keys {
			if _, ok := s.Data[k]; !ok {
				errs = append(errs, field.Required(dataPath.Key(k), ""))
			}
		}
	}
	switch s.Type {
	case corev1.SecretTypeServiceAccountToken:
		if s.Annotations[corev1.ServiceAccountNameKey] == "" {
			errs = append(errs, field.Required(field.NewPath("metadata", "annotations").Key(corev1.ServiceAccountNameKey), ""))
		}
	case corev1.SecretTypeDockercfg:
		need(corev1.DockerConfigKey)
	case corev1.SecretTypeDockerConfigJson:
		need(corev1.DockerConfigJsonKey)
	case corev1.SecretTypeSSHAuth:
		need(corev1.SSHAuthPrivateKey)
	case corev1.SecretTypeTLS:
		need(corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	return errs
}

func serviceAccountSpec() resourceSpec {
	return resourceSpec{
		gv: corev1.SchemeGroupVersion, resource: "serviceaccounts", singular: "serviceaccount", namespaced: true,
		newFn:      func() runtime.Object { return &corev1.ServiceAccount{} },
		newListFn:  func() runtime.Object { return &corev1.ServiceAccountList{} },
		nameFn:     apivalidation.NameIsDNSSubdomain,
		shortNames: []string{"sa"},
	}
}

// EndpointSlices: generation 1 on create and bumped on any change outside metadata (as
// kube-apiserver does); addressType is required, one of IPv4/IPv6/FQDN, and immutable.
func discoveryResources() []resourceSpec {
	return []resourceSpec{{
		gv: discoveryv1.SchemeGroupVersion, resource: "endpointslices", singular: "endpointslice", namespaced: true,
		newFn:     func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		newListFn: func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		nameFn:    apivalidation.NameIsDNSSubdomain,
		prepareCreate: func(obj runtime.Object) {
			obj.(*discoveryv1.EndpointSlice).Generation = 1
		},
		prepareUpdate: func(obj, old runtime.Object) {
			e, o := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
			a, b := *e, *o
			a.ObjectMeta, b.ObjectMeta = metav1.ObjectMeta{}, metav1.ObjectMeta{}
			a.TypeMeta, b.TypeMeta = metav1.TypeMeta{}, metav1.TypeMeta{}
			if !apiequality.Semantic.DeepEqual(a, b) {
				e.Generation = o.Generation + 1
			} else {
				e.Generation = o.Generation
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			e := obj.(*discoveryv1.EndpointSlice)
			var errs field.ErrorList
			switch e.AddressType {
			case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
			case "":
				errs = append(errs, field.Required(field.NewPath("addressType"), ""))
			default:
				errs = append(errs, field.NotSupported(field.NewPath("addressType"), e.AddressType,
					[]string{string(discoveryv1.AddressTypeIPv4), string(discoveryv1.AddressTypeIPv6), string(discoveryv1.AddressTypeFQDN)}))
			}
			for i, ep := range e.Endpoints {
				p := field.NewPath("endpoints").Index(i).Child("addresses")
				if len(ep.Addresses) == 0 || len(ep.Addresses) > 100 {
					errs = append(errs, field.Invalid(p, len(ep.Addresses), "must contain at least 1 and at most 100 addresses"))
				}
			}
			return errs
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			e, o := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
			if e.AddressType != o.AddressType {
				return field.ErrorList{field.Invalid(field.NewPath("addressType"), e.AddressType, "field is immutable")}
			}
			return nil
		},
	}}
}

// PodDisruptionBudgets: status cleared on create, generation 1 and bumped on spec changes,
// status kept on main-resource writes; /status keeps spec (no disruption controller fills it).
func policyResources() []resourceSpec {
	return []resourceSpec{{
		gv: policyv1.SchemeGroupVersion, resource: "poddisruptionbudgets", singular: "poddisruptionbudget", namespaced: true,
		newFn:      func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
		newListFn:  func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		nameFn:     apivalidation.NameIsDNSSubdomain,
		shortNames: []string{"pdb"},
		prepareCreate: func(obj runtime.Object) {
			p := obj.(*policyv1.PodDisruptionBudget)
			p.Status = policyv1.PodDisruptionBudgetStatus{}
			p.Generation = 1
		},
		prepareUpdate: func(obj, old runtime.Object) {
			p, o := obj.(*policyv1.PodDisruptionBudget), old.(*policyv1.PodDisruptionBudget)
			p.Status = o.Status
			if !apiequality.Semantic.DeepEqual(p.Spec, o.Spec) {
				p.Generation = o.Generation + 1
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			p := obj.(*policyv1.PodDisruptionBudget)
			if p.Spec.MinAvailable != nil && p.Spec.MaxUnavailable != nil {
				return field.ErrorList{field.Invalid(field.NewPath("spec"), p.Spec, "minAvailable and maxUnavailable cannot be both set")}
			}
			return nil
		},
		resetFields: []fieldpath.Path{path("status")},
		withStatus:  true,
		statusPrepareUpdate: func(obj, old runtime.Object) {
			p, o := obj.(*policyv1.PodDisruptionBudget), old.(*policyv1.PodDisruptionBudget)
			p.Spec = o.Spec
			p.Labels = o.Labels
		},
		statusResetFields: []fieldpath.Path{path("spec"), path("metadata", "labels")},
	}}
}

func appsResources() []resourceSpec {
	gv := appsv1.SchemeGroupVersion
	return []resourceSpec{{
		gv: gv, resource: "deployments", singular: "deployment", namespaced: true,
		newFn:      func() runtime.Object { return &appsv1.Deployment{} },
		newListFn:  func() runtime.Object { return &appsv1.DeploymentList{} },
		nameFn:     apivalidation.NameIsDNSSubdomain,
		shortNames: []string{"deploy"},
		categories: []string{"all"},
		prepareCreate: func(obj runtime.Object) {
			d := obj.(*appsv1.Deployment)
			d.Status = appsv1.DeploymentStatus{}
			d.Generation = 1
		},
		prepareUpdate: func(obj, old runtime.Object) {
			d, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
			d.Status = o.Status
			if !apiequality.Semantic.DeepEqual(d.Spec, o.Spec) {
				d.Generation = o.Generation + 1
			}
		},
		resetFields: []fieldpath.Path{path("status")},
		withStatus:  true,
		statusPrepareUpdate: func(obj, old runtime.Object) {
			d, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
			d.Spec = o.Spec
			d.Labels = o.Labels
		},
		statusResetFields: []fieldpath.Path{path("spec"), path("metadata", "labels")},
	}}
}

func coordinationResources() []resourceSpec {
	gv := coordinationv1.SchemeGroupVersion
	return []resourceSpec{{
		gv: gv, resource: "leases", singular: "lease", namespaced: true,
		newFn:     func() runtime.Object { return &coordinationv1.Lease{} },
		newListFn: func() runtime.Object { return &coordinationv1.LeaseList{} },
		nameFn:    apivalidation.NameIsDNSSubdomain,
	}}
}
