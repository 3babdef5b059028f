package main

// Authorization with Kubernetes' RBAC semantics.
//
// - A user in system:masters is always allowed (kube-apiserver's privileged-group authorizer
//   comes before RBAC); such requests are not recorded in the authorization log.
// - Every other request is allowed exactly when a rule bound to the user covers it. The rule
//   matching is Kubernetes' own (k8s.io/component-helpers/auth/rbac/validation.Covers: verbs,
//   API groups, resources with "*" and "*/subresource", resource names, non-resource URLs with a
//   trailing "*"); this file only finds the bindings that apply: ClusterRoleBindings (to a
//   ClusterRole) for every request, and for a request in a namespace also the RoleBindings of
//   that namespace (to a Role of that namespace or a ClusterRole, whose rules then apply in that
//   namespace only). A subject applies to a user by user name, by group, or as a ServiceAccount
//   (kind ServiceAccount, namespace -- the RoleBinding's own when empty -- and name give the user
//   name system:serviceaccount:<namespace>:<name>).
// - kube-apiserver's default bindings of system:discovery and system:public-info-viewer to
//   system:authenticated are built in (not stored objects): every authenticated user may GET
//   /api, /apis, /openapi, /version, /healthz, /livez, /readyz and what lies under /api, /apis and
//   /openapi.
// - Bindings and roles are read from the server's own registry stores at every decision (no
//   cache): a binding written a moment ago is in force for the next request.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	rbacv1 "k8s.io/api/rbac/v1"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	rbacvalidation "k8s.io/component-helpers/auth/rbac/validation"
	"k8s.io/klog/v2"
)

// rbacReader reads the RBAC objects that decide a request.
type rbacReader interface {
	ClusterRoleBindings(ctx context.Context) ([]rbacv1.ClusterRoleBinding, error)
	RoleBindings(ctx context.Context, namespace string) ([]rbacv1.RoleBinding, error)
	ClusterRole(ctx context.Context, name string) (*rbacv1.ClusterRole, error)
	Role(ctx context.Context, namespace, name string) (*rbacv1.Role, error)
}

// grant is the rules one binding gives a user, and where they come from (for the reason).
type grant struct {
	source string
	rules  []rbacv1.PolicyRule
}

// appliesTo reports whether a binding subject names the user. bindingNamespace is the
// namespace of a RoleBinding ("" for a ClusterRoleBinding): a ServiceAccount subject without a
// namespace means the binding's namespace.
func appliesTo(u user.Info, s rbacv1.Subject, bindingNamespace string) bool {
	switch s.Kind {
	case rbacv1.UserKind:
		return u.GetName() == s.Name
	case rbacv1.GroupKind:
		for _, g := range u.GetGroups() {
			if g == s.Name {
				return true
			}
		}
		return false
	case rbacv1.ServiceAccountKind:
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		if ns == "" {
			return false
		}
		return serviceaccount.MakeUsername(ns, s.Name) == u.GetName()
	}
	return false
}

func appliesToAny(u user.Info, subjects []rbacv1.Subject, bindingNamespace string) (rbacv1.Subject, bool) {
	for _, s := range subjects {
		if appliesTo(u, s, bindingNamespace) {
			return s, true
		}
	}
	return rbacv1.Subject{}, false
}

func describeSubject(s rbacv1.Subject, bindingNamespace string) string {
	if s.Kind == rbacv1.ServiceAccountKind {
		ns := s.Namespace
		if ns == "" {
			ns = bindingNamespace
		}
		return fmt.Sprintf("ServiceAccount %q", ns+"/"+s.Name)
	}
	return fmt.Sprintf("%s %q", s.Kind, s.Name)
}

// visitGrants calls visit with the rules of every binding that names the user, for a request in
// namespace ("" for cluster-scoped and non-resource requests, and for requests across all
// namespaces): first the ClusterRoleBindings, then the RoleBindings of that namespace, in the
// order the store lists them, until visit returns false (kube-apiserver's RBAC authorizer also
// stops at the first rule that allows). A binding whose role cannot be read is skipped and its
// error returned, as kube-apiserver does.
func visitGrants(ctx context.Context, r rbacReader, u user.Info, namespace string, visit func(grant) bool) []error {
	var errs []error
	crbs, err := r.ClusterRoleBindings(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, b := range crbs {
		s, ok := appliesToAny(u, b.Subjects, "")
		if !ok || b.RoleRef.Kind != "ClusterRole" {
			continue
		}
		cr, err := r.ClusterRole(ctx, b.RoleRef.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("clusterrolebinding %q: %w", b.Name, err))
			continue
		}
		if !visit(grant{
			source: fmt.Sprintf("ClusterRoleBinding %q of ClusterRole %q to %s", b.Name, cr.Name, describeSubject(s, "")),
			rules:  cr.Rules,
		}) {
			return errs
		}
	}
	if namespace == "" {
		return errs
	}
	rbs, err := r.RoleBindings(ctx, namespace)
	if err != nil {
		errs = append(errs, err)
	}
	for _, b := range rbs {
		s, ok := appliesToAny(u, b.Subjects, namespace)
		if !ok {
			continue
		}
		var rules []rbacv1.PolicyRule
		switch b.RoleRef.Kind {
		case "Role":
			role, err := r.Role(ctx, namespace, b.RoleRef.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("rolebinding %q in namespace %q: %w", b.Name, namespace, err))
				continue
			}
			rules = role.Rules
		case "ClusterRole":
			cr, err := r.ClusterRole(ctx, b.RoleRef.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("rolebinding %q in namespace %q: %w", b.Name, namespace, err))
				continue
			}
			rules = cr.Rules
		default:
			continue
		}
		if !visit(grant{
			source: fmt.Sprintf("RoleBinding %q of %s %q to %s", namespace+"/"+b.Name, b.RoleRef.Kind, b.RoleRef.Name, describeSubject(s, namespace)),
			rules:  rules,
		}) {
			return errs
		}
	}
	return errs
}

// requestRule is the request as a single-verb, single-resource rule, the form Covers checks.
func requestRule(a authorizer.Attributes) rbacv1.PolicyRule {
	if !a.IsResourceRequest() {
		return rbacv1.PolicyRule{Verbs: []string{a.GetVerb()}, NonResourceURLs: []string{a.GetPath()}}
	}
	resource := a.GetResource()
	if a.GetSubresource() != "" {
		resource += "/" + a.GetSubresource()
	}
	r := rbacv1.PolicyRule{Verbs: []string{a.GetVerb()}, APIGroups: []string{a.GetAPIGroup()}, Resources: []string{resource}}
	if a.GetName() != "" {
		r.ResourceNames = []string{a.GetName()}
	}
	return r
}

// discoveryRules are the rules of kube-apiserver's bootstrap ClusterRoles system:discovery and
// system:public-info-viewer, which it binds to system:authenticated.
var discoveryRules = []rbacv1.PolicyRule{
	{Verbs: []string{"get"}, NonResourceURLs: []string{
		"/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/",
	}},
}

func inGroup(u user.Info, group string) bool {
	for _, g := range u.GetGroups() {
		if g == group {
			return true
		}
	}
	return false
}

// decide: the RBAC decision for a user that is not in system:masters.
func decide(ctx context.Context, r rbacReader, a authorizer.Attributes) (bool, string) {
	u := a.GetUser()
	want := []rbacv1.PolicyRule{requestRule(a)}
	if !a.IsResourceRequest() && inGroup(u, user.AllAuthenticated) {
		if ok, _ := rbacvalidation.Covers(discoveryRules, want); ok {
			return true, `RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated" (built in)`
		}
	}
	if r == nil {
		return false, "RBAC: the server's RBAC storage is not ready"
	}
	namespace := ""
	if a.IsResourceRequest() {
		namespace = a.GetNamespace()
	}
	allowedBy := ""
	errs := visitGrants(ctx, r, u, namespace, func(g grant) bool {
		if ok, _ := rbacvalidation.Covers(g.rules, want); ok {
			allowedBy = g.source
			return false
		}
		return true
	})
	if allowedBy != "" {
		return true, "RBAC: allowed by " + allowedBy
	}
	if len(errs) > 0 {
		return false, "RBAC: " + errors.Join(errs...).Error()
	}
	return false, ""
}

// rbacAuthorizer is the server's authorizer: system:masters, else RBAC; every decision for a
// user outside system:masters goes to the authorization log.
type rbacAuthorizer struct {
	reader atomic.Pointer[rbacReader]
	log    *authzLog
}

func (z *rbacAuthorizer) setReader(r rbacReader) { z.reader.Store(&r) }

func (z *rbacAuthorizer) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	u := a.GetUser()
	if u == nil {
		return authorizer.DecisionNoOpinion, "no user", nil
	}
	if inGroup(u, user.SystemPrivilegedGroup) {
		return authorizer.DecisionAllow, "", nil
	}
	var r rbacReader
	if p := z.reader.Load(); p != nil {
		r = *p
	}
	allowed, reason := decide(ctx, r, a)
	z.log.record(a, allowed, reason)
	if allowed {
		return authorizer.DecisionAllow, reason, nil
	}
	// like kube-apiserver's RBAC authorizer: no opinion, which the chain turns into 403
	return authorizer.DecisionNoOpinion, reason, nil
}

// ---------------------------------------------------------------------------------------------
// The authorization log: one JSON object per line and per decision.

type authzLog struct {
	mu sync.Mutex
	f  *os.File
}

type authzRecord struct {
	User        string   `json:"user"`
	Groups      []string `json:"groups"`
	Verb        string   `json:"verb"`
	APIGroup    string   `json:"apiGroup"`
	Resource    string   `json:"resource"`
	Subresource string   `json:"subresource"`
	Namespace   string   `json:"namespace"`
	Name        string   `json:"name"`
	Path        string   `json:"path"`
	Allowed     bool     `json:"allowed"`
	Reason      string   `json:"reason,omitempty"`
}

func openAuthzLog(path string) (*authzLog, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &authzLog{f: f}, nil
}

func newAuthzRecord(a authorizer.Attributes, allowed bool, reason string) authzRecord {
	u := a.GetUser()
	groups := append([]string{}, u.GetGroups()...)
	rec := authzRecord{
		User: u.GetName(), Groups: groups, Verb: a.GetVerb(), Path: a.GetPath(),
		Allowed: allowed, Reason: reason,
	}
	if a.IsResourceRequest() {
		rec.APIGroup, rec.Resource, rec.Subresource = a.GetAPIGroup(), a.GetResource(), a.GetSubresource()
		rec.Namespace, rec.Name = a.GetNamespace(), a.GetName()
	}
	return rec
}

func (l *authzLog) record(a authorizer.Attributes, allowed bool, reason string) {
	if l == nil {
		return
	}
	line, err := json.Marshal(newAuthzRecord(a, allowed, reason))
	if err != nil {
		return
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(line); err != nil {
		writeErrorOnce.Do(func() { klog.Errorf("authorization log: %v", err) })
	}
}

var writeErrorOnce sync.Once

// ---------------------------------------------------------------------------------------------
// Reading RBAC objects from the server's own registry stores.

type storeReader struct {
	roles, roleBindings, clusterRoles, clusterRoleBindings *genericregistry.Store
}

func (s storeReader) ClusterRoleBindings(ctx context.Context) ([]rbacv1.ClusterRoleBinding, error) {
	obj, err := s.clusterRoleBindings.List(genericapirequest.WithNamespace(ctx, ""), &metainternalversion.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing clusterrolebindings: %w", err)
	}
	return obj.(*rbacv1.ClusterRoleBindingList).Items, nil
}

func (s storeReader) RoleBindings(ctx context.Context, namespace string) ([]rbacv1.RoleBinding, error) {
	obj, err := s.roleBindings.List(genericapirequest.WithNamespace(ctx, namespace), &metainternalversion.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing rolebindings in namespace %q: %w", namespace, err)
	}
	return obj.(*rbacv1.RoleBindingList).Items, nil
}

func (s storeReader) ClusterRole(ctx context.Context, name string) (*rbacv1.ClusterRole, error) {
	obj, err := s.clusterRoles.Get(genericapirequest.WithNamespace(ctx, ""), name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return obj.(*rbacv1.ClusterRole), nil
}

func (s storeReader) Role(ctx context.Context, namespace, name string) (*rbacv1.Role, error) {
	obj, err := s.roles.Get(genericapirequest.WithNamespace(ctx, namespace), name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return obj.(*rbacv1.Role), nil
}

// storeReaderFrom picks the RBAC stores out of the installed rbac.authorization.k8s.io storage.
func storeReaderFrom(st map[string]rest.Storage) (storeReader, error) {
	get := func(resource string) (*genericregistry.Store, error) {
		n, ok := st[resource].(namedStore)
		if !ok {
			return nil, fmt.Errorf("no registry store for %s", resource)
		}
		return n.Store, nil
	}
	var r storeReader
	var err error
	for _, x := range []struct {
		name string
		dst  **genericregistry.Store
	}{{"roles", &r.roles}, {"rolebindings", &r.roleBindings}, {"clusterroles", &r.clusterRoles}, {"clusterrolebindings", &r.clusterRoleBindings}} {
		if *x.dst, err = get(x.name); err != nil {
			return r, err
		}
	}
	return r, nil
}
