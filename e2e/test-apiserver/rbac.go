package main

// rbac.authorization.k8s.io/v1: Roles, RoleBindings (namespaced), ClusterRoles,
// ClusterRoleBindings (cluster-scoped), with the checks kube-apiserver makes on them (names are
// path segments, so "system:discovery" is a valid name; a rule needs verbs and either
// apiGroups+resources or nonResourceURLs, the latter only in ClusterRoles; a binding's roleRef is
// a Role or ClusterRole of rbac.authorization.k8s.io and cannot change; subjects are User, Group
// or ServiceAccount) and the v1 defaults for binding api groups.
//
// Not done (kube-apiserver does it): escalation prevention on writes (a user may create a Role or
// binding granting more than they hold), and ClusterRole aggregation (aggregationRule is stored,
// no controller fills the rules).

import (
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validateRBACName: RBAC object names only need to be valid path segments (kube-apiserver's
// ValidateRBACName).
func validateRBACName(name string, prefix bool) []string {
	if prefix {
		return content.IsPathSegmentPrefix(name)
	}
	return content.IsPathSegmentName(name)
}

func validateRules(rules []rbacv1.PolicyRule, namespaced bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		rp := p.Index(i)
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(rp.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) > 0 {
			if namespaced {
				errs = append(errs, field.Invalid(rp.Child("nonResourceURLs"), r.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
			}
			if len(r.APIGroups) > 0 || len(r.Resources) > 0 || len(r.ResourceNames) > 0 {
				errs = append(errs, field.Invalid(rp.Child("nonResourceURLs"), r.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(r.APIGroups) == 0 {
			errs = append(errs, field.Required(rp.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
		if len(r.Resources) == 0 {
			errs = append(errs, field.Required(rp.Child("resources"), "resource rules must supply at least one resource"))
		}
	}
	return errs
}

func validateRoleRef(ref rbacv1.RoleRef, clusterBinding bool) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.NotSupported(p.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	kinds := []string{"Role", "ClusterRole"}
	if clusterBinding {
		kinds = []string{"ClusterRole"}
	}
	ok := false
	for _, k := range kinds {
		ok = ok || ref.Kind == k
	}
	if !ok {
		errs = append(errs, field.NotSupported(p.Child("kind"), ref.Kind, kinds))
	}
	if ref.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		for _, msg := range validateRBACName(ref.Name, false) {
			errs = append(errs, field.Invalid(p.Child("name"), ref.Name, msg))
		}
	}
	return errs
}

func validateSubjects(subjects []rbacv1.Subject, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	for i, s := range subjects {
		p := field.NewPath("subjects").Index(i)
		if s.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			if s.Name != "" {
				for _, msg := range apivalidation.NameIsDNSSubdomain(s.Name, false) {
					errs = append(errs, field.Invalid(p.Child("name"), s.Name, msg))
				}
			}
			if s.APIGroup != "" {
				errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{""}))
			}
			if !namespaced && s.Namespace == "" {
				errs = append(errs, field.Required(p.Child("namespace"), ""))
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
			if s.APIGroup != rbacv1.GroupName {
				errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("kind"), s.Kind,
				[]string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
		}
	}
	return errs
}

// defaultBinding applies rbac/v1's defaults: roleRef.apiGroup and the apiGroup of User and
// Group subjects are rbac.authorization.k8s.io when empty.
func defaultBinding(ref *rbacv1.RoleRef, subjects []rbacv1.Subject) {
	if ref.APIGroup == "" {
		ref.APIGroup = rbacv1.GroupName
	}
	for i := range subjects {
		if subjects[i].APIGroup == "" && (subjects[i].Kind == rbacv1.UserKind || subjects[i].Kind == rbacv1.GroupKind) {
			subjects[i].APIGroup = rbacv1.GroupName
		}
	}
}

func roleRefImmutable(ref, old rbacv1.RoleRef) field.ErrorList {
	if ref != old {
		return field.ErrorList{field.Invalid(field.NewPath("roleRef"), ref, "cannot change roleRef")}
	}
	return nil
}

func rbacResources() []resourceSpec {
	gv := rbacv1.SchemeGroupVersion
	return []resourceSpec{
		{
			gv: gv, resource: "roles", singular: "role", namespaced: true,
			newFn:     func() runtime.Object { return &rbacv1.Role{} },
			newListFn: func() runtime.Object { return &rbacv1.RoleList{} },
			nameFn:    validateRBACName,
			validate: func(obj runtime.Object) field.ErrorList {
				return validateRules(obj.(*rbacv1.Role).Rules, true, field.NewPath("rules"))
			},
		},
		{
			gv: gv, resource: "clusterroles", singular: "clusterrole", namespaced: false,
			newFn:     func() runtime.Object { return &rbacv1.ClusterRole{} },
			newListFn: func() runtime.Object { return &rbacv1.ClusterRoleList{} },
			nameFn:    validateRBACName,
			validate: func(obj runtime.Object) field.ErrorList {
				cr := obj.(*rbacv1.ClusterRole)
				errs := validateRules(cr.Rules, false, field.NewPath("rules"))
				if cr.AggregationRule != nil && len(cr.AggregationRule.ClusterRoleSelectors) == 0 {
					errs = append(errs, field.Required(field.NewPath("aggregationRule", "clusterRoleSelectors"), "at least one clusterRoleSelector required if aggregationRule is non-nil"))
				}
				return errs
			},
		},
		{
			gv: gv, resource: "rolebindings", singular: "rolebinding", namespaced: true,
			newFn:     func() runtime.Object { return &rbacv1.RoleBinding{} },
			newListFn: func() runtime.Object { return &rbacv1.RoleBindingList{} },
			nameFn:    validateRBACName,
			prepareCreate: func(obj runtime.Object) {
				b := obj.(*rbacv1.RoleBinding)
				defaultBinding(&b.RoleRef, b.Subjects)
			},
			prepareUpdate: func(obj, old runtime.Object) {
				b := obj.(*rbacv1.RoleBinding)
				defaultBinding(&b.RoleRef, b.Subjects)
			},
			validate: func(obj runtime.Object) field.ErrorList {
				b := obj.(*rbacv1.RoleBinding)
				return append(validateRoleRef(b.RoleRef, false), validateSubjects(b.Subjects, true)...)
			},
			validateUpdate: func(obj, old runtime.Object) field.ErrorList {
				return roleRefImmutable(obj.(*rbacv1.RoleBinding).RoleRef, old.(*rbacv1.RoleBinding).RoleRef)
			},
		},
		{
			gv: gv, resource: "clusterrolebindings", singular: "clusterrolebinding", namespaced: false,
			newFn:     func() runtime.Object { return &rbacv1.ClusterRoleBinding{} },
			newListFn: func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} },
			nameFn:    validateRBACName,
			prepareCreate: func(obj runtime.Object) {
				b := obj.(*rbacv1.ClusterRoleBinding)
				defaultBinding(&b.RoleRef, b.Subjects)
			},
			prepareUpdate: func(obj, old runtime.Object) {
				b := obj.(*rbacv1.ClusterRoleBinding)
				defaultBinding(&b.RoleRef, b.Subjects)
			},
			validate: func(obj runtime.Object) field.ErrorList {
				b := obj.(*rbacv1.ClusterRoleBinding)
				return append(validateRoleRef(b.RoleRef, true), validateSubjects(b.Subjects, false)...)
			},
			validateUpdate: func(obj, old runtime.Object) field.ErrorList {
				return roleRefImmutable(obj.(*rbacv1.ClusterRoleBinding).RoleRef, old.(*rbacv1.ClusterRoleBinding).RoleRef)
			},
		},
	}
}

// bindingSubjects renders subjects for `kubectl get -o wide` style columns.
func bindingSubjects(subjects []rbacv1.Subject, kind string) string {
	var out string
	for _, s := range subjects {
		if s.Kind != kind {
			continue
		}
		name := s.Name
		if kind == rbacv1.ServiceAccountKind {
			name = fmt.Sprintf("%s/%s", s.Namespace, s.Name)
		}
		if out != "" {
			out += ", "
		}
		out += name
	}
	return out
}
