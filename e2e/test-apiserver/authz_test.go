package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// fakeRBAC is an in-memory rbacReader.
type fakeRBAC struct {
	roles    []rbacv1.Role
	rbs      []rbacv1.RoleBinding
	crs      []rbacv1.ClusterRole
	crbs     []rbacv1.ClusterRoleBinding
	rbReads  []string // namespaces whose RoleBindings were read
	failList bool
}

func (f *fakeRBAC) ClusterRoleBindings(ctx context.Context) ([]rbacv1.ClusterRoleBinding, error) {
	return f.crbs, nil
}

func (f *fakeRBAC) RoleBindings(ctx context.Context, ns string) ([]rbacv1.RoleBinding, error) {
	f.rbReads = append(f.rbReads, ns)
	var out []rbacv1.RoleBinding
	for _, b := range f.rbs {
		if b.Namespace == ns {
			out = append(out, b)
		}
	}
	return out, nil
}

func (f *fakeRBAC) ClusterRole(ctx context.Context, name string) (*rbacv1.ClusterRole, error) {
	for i := range f.crs {
		if f.crs[i].Name == name {
			return &f.crs[i], nil
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: rbacv1.GroupName, Resource: "clusterroles"}, name)
}

func (f *fakeRBAC) Role(ctx context.Context, ns, name string) (*rbacv1.Role, error) {
	for i := range f.roles {
		if f.roles[i].Namespace == ns && f.roles[i].Name == name {
			return &f.roles[i], nil
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: rbacv1.GroupName, Resource: "roles"}, name)
}

func om(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func rule(groups, resources, verbs []string, names ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs, ResourceNames: names}
}

func role(ns, name string, rules ...rbacv1.PolicyRule) rbacv1.Role {
	return rbacv1.Role{ObjectMeta: om(ns, name), Rules: rules}
}

func clusterRole(name string, rules ...rbacv1.PolicyRule) rbacv1.ClusterRole {
	return rbacv1.ClusterRole{ObjectMeta: om("", name), Rules: rules}
}

func roleBinding(ns, name, kind, roleName string, subjects ...rbacv1.Subject) rbacv1.RoleBinding {
	return rbacv1.RoleBinding{ObjectMeta: om(ns, name),
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: roleName}, Subjects: subjects}
}

func clusterRoleBinding(name, roleName string, subjects ...rbacv1.Subject) rbacv1.ClusterRoleBinding {
	return rbacv1.ClusterRoleBinding{ObjectMeta: om("", name),
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: roleName}, Subjects: subjects}
}

func userSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

func groupSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
}

func saSubject(ns, name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}
}

func person(name string, groups ...string) user.Info {
	return &user.DefaultInfo{Name: name, Groups: append(groups, user.AllAuthenticated)}
}

func serviceAccount(ns, name string) user.Info {
	return &user.DefaultInfo{Name: "system:serviceaccount:" + ns + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, user.AllAuthenticated}}
}

// req is a resource request: verb on group/resource[/subresource] [name] in namespace.
func req(u user.Info, verb, group, resource, ns, name string) authorizer.AttributesRecord {
	sub := ""
	if i := strings.IndexByte(resource, '/'); i >= 0 {
		resource, sub = resource[:i], resource[i+1:]
	}
	return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, APIVersion: "v1",
		Resource: resource, Subresource: sub, Namespace: ns, Name: name, ResourceRequest: true,
		Path: "/apis/" + group + "/v1/namespaces/" + ns + "/" + resource}
}

func nonResource(u user.Info, verb, path string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{User: u, Verb: verb, Path: path}
}

type tc struct {
	name  string
	attrs authorizer.AttributesRecord
	allow bool
}

func check(t *testing.T, r rbacReader, cases []tc) {
	t.Helper()
	for _, c := range cases {
		got, reason := decide(context.Background(), r, c.attrs)
		if got != c.allow {
			t.Errorf("%s: allowed=%v, want %v (reason %q)", c.name, got, c.allow, reason)
		}
	}
}

func TestUserSubject(t *testing.T) {
	r := &fakeRBAC{
		roles: []rbacv1.Role{role("apps", "cm-reader", rule([]string{""}, []string{"configmaps"}, []string{"get", "list", "watch"}))},
		rbs:   []rbacv1.RoleBinding{roleBinding("apps", "alice-reads", "Role", "cm-reader", userSubject("alice"))},
	}
	alice, bob := person("alice"), person("bob")
	check(t, r, []tc{
		{"alice gets a configmap", req(alice, "get", "", "configmaps", "apps", "x"), true},
		{"alice watches configmaps", req(alice, "watch", "", "configmaps", "apps", ""), true},
		{"alice may not update", req(alice, "update", "", "configmaps", "apps", "x"), false},
		{"alice may not read secrets", req(alice, "get", "", "secrets", "apps", "x"), false},
		{"a configmap of another group is another resource", req(alice, "get", "example.com", "configmaps", "apps", "x"), false},
		{"bob is not bound", req(bob, "get", "", "configmaps", "apps", "x"), false},
		{"a user named like a group is not the group", req(person("system:authenticated"), "get", "", "configmaps", "apps", "x"), false},
	})
}

func TestGroupSubject(t *testing.T) {
	r := &fakeRBAC{
		crs:  []rbacv1.ClusterRole{clusterRole("svc-viewer", rule([]string{""}, []string{"services"}, []string{"list"}))},
		crbs: []rbacv1.ClusterRoleBinding{clusterRoleBinding("devs-view", "svc-viewer", groupSubject("devs"))},
	}
	check(t, r, []tc{
		{"member lists services in a namespace", req(person("carol", "devs"), "list", "", "services", "a", ""), true},
		{"member lists services in all namespaces", req(person("carol", "devs"), "list", "", "services", "", ""), true},
		{"non-member", req(person("dave", "ops"), "list", "", "services", "a", ""), false},
		{"a user named like the group is not a member", req(person("devs"), "list", "", "services", "a", ""), false},
	})
}

func TestServiceAccountSubject(t *testing.T) {
	r := &fakeRBAC{
		roles: []rbacv1.Role{role("iter8", "leases", rule([]string{"coordination.k8s.io"}, []string{"leases"}, []string{"get", "create", "patch"}))},
		rbs: []rbacv1.RoleBinding{
			// namespace given, and namespace left empty (= the binding's namespace)
			roleBinding("iter8", "explicit", "Role", "leases", saSubject("iter8", "controller")),
			roleBinding("iter8", "implicit", "Role", "leases", saSubject("", "helper")),
		},
		crs:  []rbacv1.ClusterRole{clusterRole("route-writer", rule([]string{"gateway.networking.k8s.io"}, []string{"httproutes"}, []string{"*"}))},
		crbs: []rbacv1.ClusterRoleBinding{clusterRoleBinding("routes", "route-writer", saSubject("iter8", "controller"))},
	}
	ctrl := serviceAccount("iter8", "controller")
	check(t, r, []tc{
		{"sa patches its lease", req(ctrl, "patch", "coordination.k8s.io", "leases", "iter8", "leader"), true},
		{"sa subject without namespace means the binding's namespace", req(serviceAccount("iter8", "helper"), "create", "coordination.k8s.io", "leases", "iter8", ""), true},
		{"same name in another namespace is another account", req(serviceAccount("other", "controller"), "patch", "coordination.k8s.io", "leases", "iter8", "leader"), false},
		{"sa writes routes anywhere (ClusterRoleBinding)", req(ctrl, "patch", "gateway.networking.k8s.io", "httproutes", "test", "web"), true},
		{"a user named like the sa but not the sa's user name", req(person("controller"), "patch", "coordination.k8s.io", "leases", "iter8", "leader"), false},
	})
	// a ServiceAccount subject of a ClusterRoleBinding needs a namespace
	r2 := &fakeRBAC{crs: r.crs, crbs: []rbacv1.ClusterRoleBinding{clusterRoleBinding("routes", "route-writer", saSubject("", "controller"))}}
	check(t, r2, []tc{{"cluster binding to a sa without namespace applies to nobody", req(ctrl, "patch", "gateway.networking.k8s.io", "httproutes", "test", "web"), false}})
}

func TestRoleBindingToClusterRoleIsLimitedToItsNamespace(t *testing.T) {
	r := &fakeRBAC{
		crs: []rbacv1.ClusterRole{clusterRole("deploy-reader", rule([]string{"apps"}, []string{"deployments"}, []string{"get", "list", "watch"}))},
		rbs: []rbacv1.RoleBinding{roleBinding("team-a", "read", "ClusterRole", "deploy-reader", userSubject("erin"))},
	}
	erin := person("erin")
	check(t, r, []tc{
		{"in the binding's namespace", req(erin, "list", "apps", "deployments", "team-a", ""), true},
		{"in another namespace", req(erin, "list", "apps", "deployments", "team-b", ""), false},
		{"across all namespaces", req(erin, "list", "apps", "deployments", "", ""), false},
	})
}

func TestBindingInAnotherNamespaceDoesNotApply(t *testing.T) {
	r := &fakeRBAC{
		roles: []rbacv1.Role{
			role("team-a", "edit", rule([]string{""}, []string{"configmaps"}, []string{"*"})),
			role("team-b", "edit", rule([]string{""}, []string{"configmaps"}, []string{"*"})),
		},
		rbs: []rbacv1.RoleBinding{roleBinding("team-a", "frank", "Role", "edit", userSubject("frank"))},
	}
	check(t, r, []tc{
		{"team-a", req(person("frank"), "create", "", "configmaps", "team-a", ""), true},
		{"team-b has a Role of the same name but no binding", req(person("frank"), "create", "", "configmaps", "team-b", ""), false},
	})
	for _, ns := range r.rbReads {
		if ns != "team-a" && ns != "team-b" {
			t.Errorf("read the RoleBindings of namespace %q", ns)
		}
	}
}

func TestNoBindingIsDenied(t *testing.T) {
	r := &fakeRBAC{
		crs:   []rbacv1.ClusterRole{clusterRole("everything", rule([]string{"*"}, []string{"*"}, []string{"*"}))},
		roles: []rbacv1.Role{role("x", "everything", rule([]string{"*"}, []string{"*"}, []string{"*"}))},
	}
	u := serviceAccount("x", "nobody")
	check(t, r, []tc{
		{"namespaced", req(u, "get", "", "configmaps", "x", "a"), false},
		{"cluster-scoped", req(u, "get", "", "namespaces", "", "x"), false},
		{"non-resource outside discovery", nonResource(u, "get", "/metrics"), false},
	})
	got, reason := decide(context.Background(), r, req(u, "get", "", "configmaps", "x", "a"))
	if got || reason != "" {
		t.Errorf("no binding: allowed=%v reason=%q, want denied without reason", got, reason)
	}
}

func TestRuleMatching(t *testing.T) {
	r := &fakeRBAC{
		roles: []rbacv1.Role{role("ns", "r",
			rule([]string{"apps"}, []string{"deployments/status"}, []string{"patch"}),
			rule([]string{""}, []string{"*/status"}, []string{"get"}),
			rule([]string{""}, []string{"configmaps"}, []string{"get", "update"}, "only-this"),
		)},
		rbs: []rbacv1.RoleBinding{roleBinding("ns", "b", "Role", "r", userSubject("gina"))},
	}
	g := person("gina")
	check(t, r, []tc{
		{"subresource named exactly", req(g, "patch", "apps", "deployments/status", "ns", "web"), true},
		{"the subresource rule does not grant the resource", req(g, "patch", "apps", "deployments", "ns", "web"), false},
		{"*/status", req(g, "get", "", "services/status", "ns", "web"), true},
		{"*/status is not the main resource", req(g, "get", "", "services", "ns", "web"), false},
		{"resourceNames: the named object", req(g, "update", "", "configmaps", "ns", "only-this"), true},
		{"resourceNames: another object", req(g, "update", "", "configmaps", "ns", "other"), false},
		{"resourceNames do not allow list", req(g, "list", "", "configmaps", "ns", ""), false},
	})
}

func TestNonResourceURLs(t *testing.T) {
	r := &fakeRBAC{
		crs:  []rbacv1.ClusterRole{{ObjectMeta: om("", "metrics"), Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics", "/debug/*"}, Verbs: []string{"get"}}}}},
		crbs: []rbacv1.ClusterRoleBinding{clusterRoleBinding("metrics", "metrics", userSubject("prom"))},
	}
	anyone := person("anyone")
	check(t, r, []tc{
		{"discovery /api", nonResource(anyone, "get", "/api"), true},
		{"discovery /apis/apps/v1", nonResource(anyone, "get", "/apis/apps/v1"), true},
		{"openapi v3", nonResource(anyone, "get", "/openapi/v3/apis/apps/v1"), true},
		{"/version", nonResource(anyone, "get", "/version"), true},
		{"/readyz", nonResource(anyone, "get", "/readyz"), true},
		{"discovery is GET only", nonResource(anyone, "post", "/api"), false},
		{"/metrics without a binding", nonResource(anyone, "get", "/metrics"), false},
		{"/metrics bound", nonResource(person("prom"), "get", "/metrics"), true},
		{"/debug/* bound", nonResource(person("prom"), "get", "/debug/pprof/heap"), true},
		{"unauthenticated users get no discovery", nonResource(&user.DefaultInfo{Name: "system:anonymous", Groups: []string{user.AllUnauthenticated}}, "get", "/api"), false},
	})
}

func TestMissingRoleIsSkipped(t *testing.T) {
	r := &fakeRBAC{
		roles: []rbacv1.Role{role("ns", "present", rule([]string{""}, []string{"services"}, []string{"get"}))},
		rbs: []rbacv1.RoleBinding{
			roleBinding("ns", "dangling", "Role", "missing", userSubject("hank")),
			roleBinding("ns", "good", "Role", "present", userSubject("hank")),
		},
	}
	h := person("hank")
	check(t, r, []tc{{"the other binding still allows", req(h, "get", "", "services", "ns", "web"), true}})
	got, reason := decide(context.Background(), r, req(h, "get", "", "secrets", "ns", "x"))
	if got || !strings.Contains(reason, "missing") {
		t.Errorf("denied request should name the missing role: allowed=%v reason=%q", got, reason)
	}
}

func TestAuthorizerSuperuserAndLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "authz.log")
	l, err := openAuthzLog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	z := &rbacAuthorizer{log: l}
	z.setReader(&fakeRBAC{
		roles: []rbacv1.Role{role("ns", "r", rule([]string{""}, []string{"configmaps"}, []string{"get"}))},
		rbs:   []rbacv1.RoleBinding{roleBinding("ns", "b", "Role", "r", saSubject("ns", "ctl"))},
	})
	admin := &user.DefaultInfo{Name: "admin", Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated}}
	ctl := serviceAccount("ns", "ctl")
	for _, c := range []struct {
		a    authorizer.AttributesRecord
		want authorizer.Decision
	}{
		{req(admin, "delete", "", "namespaces", "", "ns"), authorizer.DecisionAllow},
		{req(ctl, "get", "", "configmaps", "ns", "routemap"), authorizer.DecisionAllow},
		{req(ctl, "update", "", "configmaps", "ns", "routemap"), authorizer.DecisionNoOpinion},
	} {
		if d, reason, _ := z.Authorize(context.Background(), c.a); d != c.want {
			t.Errorf("%s %s: decision %v, want %v (%s)", c.a.User.GetName(), c.a.Verb, d, c.want, reason)
		}
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines (system:masters is not logged), got %d:\n%s", len(lines), data)
	}
	var recs []map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		for _, k := range []string{"user", "groups", "verb", "apiGroup", "resource", "subresource", "namespace", "name", "path", "allowed"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line lacks %q: %s", k, line)
			}
		}
		recs = append(recs, m)
	}
	if recs[0]["allowed"] != true || recs[0]["verb"] != "get" || recs[0]["user"] != "system:serviceaccount:ns:ctl" ||
		recs[0]["resource"] != "configmaps" || recs[0]["namespace"] != "ns" || recs[0]["name"] != "routemap" {
		t.Errorf("first record: %v", recs[0])
	}
	if recs[1]["allowed"] != false || recs[1]["verb"] != "update" {
		t.Errorf("second record: %v", recs[1])
	}
}

func TestTokenFileIsReread(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(p, []byte("t1,alice,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := loadTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tf.lookup("t2"); ok {
		t.Fatal("t2 known before it was written")
	}
	if err := os.WriteFile(p, []byte("t1,alice,1\nt2,system:serviceaccount:ns:sa,2,\"system:serviceaccounts,system:serviceaccounts:ns\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, ok := tf.lookup("t2")
	if !ok || u.Name != "system:serviceaccount:ns:sa" {
		t.Fatalf("t2 after rewrite: %v %v", u, ok)
	}
	want := []string{"system:serviceaccounts", "system:serviceaccounts:ns", user.AllAuthenticated}
	if strings.Join(u.Groups, ",") != strings.Join(want, ",") {
		t.Errorf("groups %v, want %v", u.Groups, want)
	}
	// a broken file keeps the tokens read before
	if err := os.WriteFile(p, []byte("t3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := tf.lookup("t2"); !ok {
		t.Error("a broken token file dropped the tokens read before")
	}
}
