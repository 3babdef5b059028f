// Command test-apiserver is a Kubernetes API server for end-to-end tests, built only from
// Debian's packaged Kubernetes Go libraries (k8s.io/apiserver, apiextensions-apiserver, api,
// apimachinery, client-go, kube-openapi) and backed by a real etcd.
//
// It is ONE generic API server: the apiextensions server (CRDs) with the legacy core group
// (/api/v1: namespaces, configmaps, services, events, secrets, serviceaccounts) and the apps/v1
// (deployments), coordination.k8s.io/v1 (leases), discovery.k8s.io/v1 (endpointslices),
// rbac.authorization.k8s.io/v1 (roles, rolebindings, clusterroles, clusterrolebindings) and
// policy/v1 (poddisruptionbudgets) groups installed on the same underlying server, so that
// discovery and OpenAPI cover everything. Authentication is by static bearer tokens
// (--token-auth-file, re-read when it changes); a request without a token is the user "admin" in
// system:masters. Authorization: system:masters is always allowed, everyone else by RBAC (see
// authz.go), each such decision logged to --authz-log. Admission is off. Priority-and-fairness is off, so
// k8s.io/apiserver's max-in-flight filter limits requests (--max-requests-inflight,
// --max-mutating-requests-inflight) and answers 429 with Retry-After past the limit, except to
// system:masters. It binds to loopback only and serves a self-signed certificate for 127.0.0.1.
//
// There is no defaulting, no spec validation beyond object metadata, no garbage collector and no
// controllers (a Deployment never rolls out: tests write its status through /status).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	noopoteltrace "go.opentelemetry.io/otel/trace/noop"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	apiextensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	crdoptions "k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	apiextensionsopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	utilopenapi "k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/webhook"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
	"k8s.io/kube-openapi/pkg/common"
	netutils "k8s.io/utils/net"

	generatedopenapi "iter8e2e/testapiserver/generated/openapi"
)

type flags struct {
	etcdServers string
	bindAddress string
	securePort  int
	certDir     string
	etcdPrefix  string
	verbosity   string
	tokenFile   string
	maxInFlight int
	maxMutating int
	authzLog    string
}

func main() {
	var f flags
	fs := flag.NewFlagSet("test-apiserver", flag.ExitOnError)
	fs.StringVar(&f.etcdServers, "etcd-servers", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	fs.StringVar(&f.bindAddress, "bind-address", "127.0.0.1", "address to serve on (loopback only)")
	fs.IntVar(&f.securePort, "secure-port", 6443, "HTTPS port")
	fs.StringVar(&f.certDir, "cert-dir", "", "directory for the self-signed serving certificate (apiserver.crt/.key)")
	fs.StringVar(&f.etcdPrefix, "etcd-prefix", "/registry", "etcd key prefix")
	fs.StringVar(&f.verbosity, "v", "1", "klog verbosity")
	fs.StringVar(&f.tokenFile, "token-auth-file", "", "bearer tokens, as kube-apiserver's --token-auth-file (token,user,uid,\"groups\"); requests without a token stay the administrator")
	fs.IntVar(&f.maxInFlight, "max-requests-inflight", 400, "read requests in flight before 429 (k8s.io/apiserver's max-in-flight filter; system:masters is exempt)")
	fs.IntVar(&f.maxMutating, "max-mutating-requests-inflight", 200, "write requests in flight before 429 (system:masters is exempt)")
	fs.StringVar(&f.authzLog, "authz-log", "", "append one JSON line per authorization decision for users outside system:masters to this file")
	showVersion := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version.Get().GitVersion)
		return
	}
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", f.verbosity)

	ip := netutils.ParseIPSloppy(f.bindAddress)
	if ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "--bind-address must be a loopback address, got %q\n", f.bindAddress)
		os.Exit(2)
	}
	if f.certDir == "" {
		fmt.Fprintln(os.Stderr, "--cert-dir is required")
		os.Exit(2)
	}

	ctx := genericapiserver.SetupSignalContext()
	if err := run(ctx, f, ip); err != nil {
		fmt.Fprintf(os.Stderr, "test-apiserver: %v\n", err)
		os.Exit(1)
	}
}

// allowAll authenticates every request as an administrator.
var allowAll = authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
	return &authenticator.Response{User: &user.DefaultInfo{
		Name:   "admin",
		Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated},
	}}, true, nil
})

func run(ctx context.Context, f flags, ip net.IP) error {
	servers := strings.Split(f.etcdServers, ",")

	// ---- generic server config (apiextensions' codecs are the server's default serializer)
	cfg := genericapiserver.NewRecommendedConfig(apiextensionsapiserver.Codecs)

	runOpts := genericoptions.NewServerRunOptions()
	runOpts.AdvertiseAddress = ip
	runOpts.MaxRequestsInFlight = f.maxInFlight
	runOpts.MaxMutatingRequestsInFlight = f.maxMutating
	if err := runOpts.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("component globals: %w", err)
	}
	if err := runOpts.ApplyTo(&cfg.Config); err != nil {
		return fmt.Errorf("server run options: %w", err)
	}

	// serving: loopback only, self-signed certificate for 127.0.0.1 / localhost
	serving := genericoptions.NewSecureServingOptions().WithLoopback()
	serving.BindAddress = ip
	serving.BindPort = f.securePort
	serving.ServerCert.CertDirectory = f.certDir
	serving.ServerCert.PairName = "apiserver"
	if err := serving.MaybeDefaultWithSelfSignedCerts("localhost", nil, nil); err != nil { // SANs: localhost + the bind IP
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := serving.ApplyTo(&cfg.SecureServing, &cfg.LoopbackClientConfig); err != nil {
		return fmt.Errorf("secure serving: %w", err)
	}

	// etcd storage for CRDs (apiextensions codec) -- also registers the etcd health/ready checks
	crdEtcd := genericoptions.NewEtcdOptions(storagebackend.NewDefaultConfig(
		strings.TrimSuffix(f.etcdPrefix, "/")+"/apiextensions.kubernetes.io",
		apiextensionsapiserver.Codecs.LegacyCodec(apiextensionsv1beta1.SchemeGroupVersion, apiextensionsv1.SchemeGroupVersion)))
	crdEtcd.StorageConfig.Transport.ServerList = servers
	if err := crdEtcd.ApplyTo(&cfg.Config); err != nil {
		return fmt.Errorf("etcd options: %w", err)
	}

	// every group/version/resource of apiextensions (the built-in groups are installed directly)
	cfg.MergedResourceConfig = apiextensionsapiserver.DefaultAPIResourceConfigSource()

	// authn: bearer tokens (none = admin); authz: system:masters or RBAC; admission off;
	// priority-and-fairness stays off (FlowControl nil)
	cfg.Authentication.Authenticator = allowAll
	if f.tokenFile != "" {
		tokens, err := loadTokenFile(f.tokenFile)
		if err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		cfg.Authentication.Authenticator = authenticate(tokens)
	}
	alog, err := openAuthzLog(f.authzLog)
	if err != nil {
		return fmt.Errorf("authorization log: %w", err)
	}
	authz := &rbacAuthorizer{log: alog}
	cfg.Authorization.Authorizer = authz
	cfg.AdmissionControl = admission.NewChainHandler()
	cfg.FlowControl = nil

	// the core-API client is off: no kube-apiserver behind this one, no core informers
	// (webhook conversion's service resolution is the only user, and it resolves nothing)
	cfg.ClientConfig = nil
	cfg.SharedInformerFactory = nil

	// OpenAPI: our generated models (core/apps/coordination + apimachinery) merged with
	// apiextensions' definitions, for v2 and v3. Server-side apply's typed converter is built
	// from these, so managed fields carry real list-map keys.
	getDefs := func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		defs := apiextensionsopenapi.GetOpenAPIDefinitions(ref)
		for k, v := range generatedopenapi.GetOpenAPIDefinitions(ref) {
			defs[k] = v
		}
		return defs
	}
	namer := openapinamer.NewDefinitionNamer(apiextensionsapiserver.Scheme, namerScheme)
	cfg.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(utilopenapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(getDefs), namer)
	cfg.OpenAPIConfig.Info.Title = "Kubernetes"
	cfg.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(utilopenapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(getDefs), namer)
	cfg.OpenAPIV3Config.Info.Title = "Kubernetes"

	// default namespaces, created once the server runs
	cfg.AddPostStartHookOrDie("create-default-namespaces", func(hc genericapiserver.PostStartHookContext) error {
		go createDefaultNamespaces(hc)
		return nil
	})
	// synchronous, as kube-apiserver's RBAC bootstrap hook: /readyz is ok once cluster-admin exists
	cfg.AddPostStartHookOrDie("create-cluster-admin", createClusterAdmin)

	crdConfig := &apiextensionsapiserver.Config{
		GenericConfig: cfg,
		ExtraConfig: apiextensionsapiserver.ExtraConfig{
			CRDRESTOptionsGetter: crdoptions.NewCRDRESTOptionsGetter(*crdEtcd, cfg.ResourceTransformers, cfg.StorageObjectCountTracker),
			ServiceResolver:      noServiceResolver{},
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, cfg.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
			MasterCount:          1,
		},
	}
	completed := crdConfig.Complete()
	// apiextensions turns discovery off because it normally sits behind kube-apiserver; here it
	// is the only server, so /api and /apis discovery are served by it.
	completed.GenericConfig.EnableDiscovery = true

	crdServer, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return fmt.Errorf("creating the apiextensions server: %w", err)
	}
	server := crdServer.GenericAPIServer

	// ---- built-in groups on the same generic server, with their own codec on the same etcd
	kubeEtcd := *crdEtcd
	kubeEtcd.StorageConfig.Prefix = strings.TrimSuffix(f.etcdPrefix, "/")
	kubeEtcd.StorageConfig.Codec = kubeCodecs.LegacyCodec(builtinVersions()...)
	kubeEtcd.StorageConfig.StorageObjectCountTracker = cfg.StorageObjectCountTracker
	kubeOpts := kubeEtcd.CreateRESTOptionsGetter(&genericoptions.SimpleStorageFactory{StorageConfig: kubeEtcd.StorageConfig}, cfg.ResourceTransformers)

	rbacStorage, err := installBuiltins(server, kubeOpts)
	if err != nil {
		return err
	}
	reader, err := storeReaderFrom(rbacStorage)
	if err != nil {
		return err
	}
	authz.setReader(reader)

	klog.Infof("test-apiserver %s serving on https://%s", version.Get().GitVersion, net.JoinHostPort(ip.String(), fmt.Sprint(f.securePort)))
	prepared := server.PrepareRun()
	return prepared.RunWithContext(ctx)
}

type noServiceResolver struct{}

func (noServiceResolver) ResolveEndpoint(namespace, name string, port int32) (*url.URL, error) {
	return nil, fmt.Errorf("service %s/%s: this test server resolves no services", namespace, name)
}

func builtinVersions() []schema.GroupVersion {
	var out []schema.GroupVersion
	for _, g := range builtinGroups() {
		out = append(out, g.gv)
	}
	return out
}

// installBuiltins installs the built-in groups and returns the rbac.authorization.k8s.io storage
// (the authorizer reads bindings and roles from it).
func installBuiltins(server *genericapiserver.GenericAPIServer, optsGetter generic.RESTOptionsGetter) (map[string]rest.Storage, error) {
	build := func(specs []resourceSpec) (map[string]rest.Storage, error) {
		m := map[string]rest.Storage{}
		for _, s := range specs {
			stores, err := newStores(s, optsGetter)
			if err != nil {
				return nil, err
			}
			for k, v := range stores {
				m[k] = v
			}
		}
		return m, nil
	}

	core, err := build(coreResources())
	if err != nil {
		return nil, err
	}
	coreInfo := genericapiserver.NewDefaultAPIGroupInfo("", kubeScheme, metav1.ParameterCodec, kubeCodecs)
	coreInfo.VersionedResourcesStorageMap["v1"] = core
	if err := server.InstallLegacyAPIGroup(genericapiserver.DefaultLegacyAPIPrefix, &coreInfo); err != nil {
		return nil, fmt.Errorf("installing /api/v1: %w", err)
	}
	var rbacStorage map[string]rest.Storage

	for _, g := range []struct {
		group string
		specs []resourceSpec
	}{
		{"apps", appsResources()},
		{"coordination.k8s.io", coordinationResources()},
		{"discovery.k8s.io", discoveryResources()},
		{"rbac.authorization.k8s.io", rbacResources()},
		{"policy", policyResources()},
	} {
		st, err := build(g.specs)
		if err != nil {
			return nil, err
		}
		info := genericapiserver.NewDefaultAPIGroupInfo(g.group, kubeScheme, metav1.ParameterCodec, kubeCodecs)
		info.VersionedResourcesStorageMap["v1"] = st
		if err := server.InstallAPIGroup(&info); err != nil {
			return nil, fmt.Errorf("installing group %s: %w", g.group, err)
		}
		if g.group == "rbac.authorization.k8s.io" {
			rbacStorage = st
		}
	}
	return rbacStorage, nil
}

// createClusterAdmin creates kube-apiserver's bootstrap ClusterRole cluster-admin (every verb
// on every resource and non-resource URL) and its ClusterRoleBinding to system:masters, when
// missing, so that tests can bind a ServiceAccount to cluster-admin as on a real cluster. The
// other bootstrap roles (admin, edit, view, system:*) are not created.
func createClusterAdmin(hc genericapiserver.PostStartHookContext) error {
	client, err := rbacv1client.NewForConfig(hc.LoopbackClientConfig)
	if err != nil {
		return fmt.Errorf("cluster-admin: %w", err)
	}
	meta := metav1.ObjectMeta{
		Name:        "cluster-admin",
		Labels:      map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"},
		Annotations: map[string]string{"rbac.authorization.kubernetes.io/autoupdate": "true"},
	}
	role := &rbacv1.ClusterRole{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
		{NonResourceURLs: []string{"*"}, Verbs: []string{"*"}},
	}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: meta,
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: user.SystemPrivilegedGroup}},
	}
	create := []func() error{
		func() error {
			_, err := client.ClusterRoles().Create(hc.Context, role, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := client.ClusterRoleBindings().Create(hc.Context, binding, metav1.CreateOptions{})
			return err
		},
	}
	for _, c := range create {
		for attempt := 0; ; attempt++ {
			err := c()
			if err == nil || apierrors.IsAlreadyExists(err) {
				break
			}
			if hc.Context.Err() != nil {
				return nil // shutting down
			}
			if attempt%20 == 0 {
				klog.Warningf("creating cluster-admin: %v (retrying)", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func createDefaultNamespaces(hc genericapiserver.PostStartHookContext) {
	client, err := corev1client.NewForConfig(hc.LoopbackClientConfig)
	if err != nil {
		klog.Errorf("default namespaces: %v", err)
		return
	}
	for _, name := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic} {
		for attempt := 0; ; attempt++ {
			_, err := client.Namespaces().Create(hc.Context, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			if err == nil || apierrors.IsAlreadyExists(err) {
				break
			}
			if hc.Context.Err() != nil {
				return
			}
			if attempt%20 == 0 {
				klog.Warningf("creating namespace %s: %v (retrying)", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	klog.Infof("default namespaces present")
}
