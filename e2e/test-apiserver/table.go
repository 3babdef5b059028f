package main

// kubectl-like table columns (kubectl get deploy shows READY, UP-TO-DATE, ...), so that the
// output of `kubectl get` during a failing e2e test reads as it does against a real cluster.

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

type column struct {
	name, typ string
	cell      func(obj runtime.Object) interface{}
}

type columnTable struct {
	columns []column
	// wideFrom: columns from this index on only show with -o wide (priority 1); 0 = none
	wideFrom int
	// createdAt: the last column is "Created At" (a timestamp) instead of "Age", as kubectl
	// shows for Roles and ClusterRoles
	createdAt bool
}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

func (c columnTable) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	var table metav1.Table
	row := func(obj runtime.Object) error {
		m, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		var last interface{} = age(m.GetCreationTimestamp())
		if c.createdAt {
			last = m.GetCreationTimestamp().UTC().Format(time.RFC3339)
		}
		narrow, wide := c.columns, []column(nil)
		if c.wideFrom > 0 {
			narrow, wide = c.columns[:c.wideFrom], c.columns[c.wideFrom:]
		}
		cells := []interface{}{m.GetName()}
		for _, col := range narrow {
			cells = append(cells, col.cell(obj))
		}
		cells = append(cells, last)
		for _, col := range wide {
			cells = append(cells, col.cell(obj))
		}
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}})
		return nil
	}
	if meta.IsListType(object) {
		if err := meta.EachListItem(object, row); err != nil {
			return nil, err
		}
	} else if err := row(object); err != nil {
		return nil, err
	}
	if m, err := meta.ListAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
		table.Continue = m.GetContinue()
		table.RemainingItemCount = m.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	if opt, ok := tableOptions.(*metav1.TableOptions); !ok || !opt.NoHeaders {
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name"})
		last := metav1.TableColumnDefinition{Name: "Age", Type: "string"}
		if c.createdAt {
			last = metav1.TableColumnDefinition{Name: "Created At", Type: "date"}
		}
		for i, col := range c.columns {
			if c.wideFrom > 0 && i == c.wideFrom {
				// the wide columns come after Age, as in kubectl
				table.ColumnDefinitions = append(table.ColumnDefinitions, last)
				last.Name = ""
			}
			def := metav1.TableColumnDefinition{Name: col.name, Type: col.typ}
			if c.wideFrom > 0 && i >= c.wideFrom {
				def.Priority = 1
			}
			table.ColumnDefinitions = append(table.ColumnDefinitions, def)
		}
		if last.Name != "" {
			table.ColumnDefinitions = append(table.ColumnDefinitions, last)
		}
	}
	return &table, nil
}

func tableFor(resource string) *columnTable {
	switch resource {
	case "namespaces":
		return &columnTable{columns: []column{{"Status", "string", func(o runtime.Object) interface{} {
			return string(o.(*corev1.Namespace).Status.Phase)
		}}}}
	case "configmaps":
		return &columnTable{columns: []column{{"Data", "integer", func(o runtime.Object) interface{} {
			cm := o.(*corev1.ConfigMap)
			return int64(len(cm.Data) + len(cm.BinaryData))
		}}}}
	case "services":
		return &columnTable{columns: []column{
			{"Type", "string", func(o runtime.Object) interface{} { return string(o.(*corev1.Service).Spec.Type) }},
			{"Cluster-IP", "string", func(o runtime.Object) interface{} { return orNone(o.(*corev1.Service).Spec.ClusterIP) }},
			{"Ports", "string", func(o runtime.Object) interface{} {
				var ps []string
				for _, p := range o.(*corev1.Service).Spec.Ports {
					ps = append(ps, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
				}
				return orNone(strings.Join(ps, ","))
			}},
		}}
	case "deployments":
		return &columnTable{columns: []column{
			{"Ready", "string", func(o runtime.Object) interface{} {
				d := o.(*appsv1.Deployment)
				want := int32(1)
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want)
			}},
			{"Up-to-date", "integer", func(o runtime.Object) interface{} { return int64(o.(*appsv1.Deployment).Status.UpdatedReplicas) }},
			{"Available", "integer", func(o runtime.Object) interface{} { return int64(o.(*appsv1.Deployment).Status.AvailableReplicas) }},
		}}
	case "events":
		return &columnTable{columns: []column{
			{"Type", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Type }},
			{"Reason", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Reason }},
			{"Object", "string", func(o runtime.Object) interface{} {
				e := o.(*corev1.Event)
				return strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			}},
			{"Message", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Message }},
		}}
	case "secrets":
		return &columnTable{columns: []column{
			{"Type", "string", func(o runtime.Object) interface{} { return string(o.(*corev1.Secret).Type) }},
			{"Data", "integer", func(o runtime.Object) interface{} { return int64(len(o.(*corev1.Secret).Data)) }},
		}}
	case "serviceaccounts":
		return &columnTable{columns: []column{{"Secrets", "integer", func(o runtime.Object) interface{} {
			return int64(len(o.(*corev1.ServiceAccount).Secrets))
		}}}}
	case "endpointslices":
		return &columnTable{columns: []column{
			{"AddressType", "string", func(o runtime.Object) interface{} { return string(o.(*discoveryv1.EndpointSlice).AddressType) }},
			{"Ports", "string", func(o runtime.Object) interface{} {
				var ps []string
				for _, p := range o.(*discoveryv1.EndpointSlice).Ports {
					if p.Port != nil {
						ps = append(ps, fmt.Sprint(*p.Port))
					}
				}
				return orNone(strings.Join(ps, ","))
			}},
			{"Endpoints", "string", func(o runtime.Object) interface{} {
				var as []string
				for _, e := range o.(*discoveryv1.EndpointSlice).Endpoints {
					as = append(as, e.Addresses...)
				}
				if len(as) > 3 {
					return strings.Join(as[:3], ",") + fmt.Sprintf(" + %d more...", len(as)-3)
				}
				return orNone(strings.Join(as, ","))
			}},
		}}
	case "poddisruptionbudgets":
		return &columnTable{columns: []column{
			{"Min Available", "string", func(o runtime.Object) interface{} {
				if v := o.(*policyv1.PodDisruptionBudget).Spec.MinAvailable; v != nil {
					return v.String()
				}
				return "N/A"
			}},
			{"Max Unavailable", "string", func(o runtime.Object) interface{} {
				if v := o.(*policyv1.PodDisruptionBudget).Spec.MaxUnavailable; v != nil {
					return v.String()
				}
				return "N/A"
			}},
			{"Allowed Disruptions", "integer", func(o runtime.Object) interface{} {
				return int64(o.(*policyv1.PodDisruptionBudget).Status.DisruptionsAllowed)
			}},
		}}
	case "roles", "clusterroles":
		return &columnTable{createdAt: true}
	case "rolebindings":
		return bindingTable(func(o runtime.Object) (rbacv1.RoleRef, []rbacv1.Subject) {
			b := o.(*rbacv1.RoleBinding)
			return b.RoleRef, b.Subjects
		})
	case "clusterrolebindings":
		return bindingTable(func(o runtime.Object) (rbacv1.RoleRef, []rbacv1.Subject) {
			b := o.(*rbacv1.ClusterRoleBinding)
			return b.RoleRef, b.Subjects
		})
	case "leases":
		return &columnTable{columns: []column{{"Holder", "string", func(o runtime.Object) interface{} {
			l := o.(*coordinationv1.Lease)
			if l.Spec.HolderIdentity == nil {
				return ""
			}
			return *l.Spec.HolderIdentity
		}}}}
	}
	return nil
}

// bindingTable: ROLE (Kind/name), AGE, and with -o wide USERS, GROUPS, SERVICEACCOUNTS.
func bindingTable(get func(runtime.Object) (rbacv1.RoleRef, []rbacv1.Subject)) *columnTable {
	subjects := func(kind string) func(runtime.Object) interface{} {
		return func(o runtime.Object) interface{} {
			_, s := get(o)
			return bindingSubjects(s, kind)
		}
	}
	return &columnTable{wideFrom: 1, columns: []column{
		{"Role", "string", func(o runtime.Object) interface{} {
			r, _ := get(o)
			return r.Kind + "/" + r.Name
		}},
		{"Users", "string", subjects(rbacv1.UserKind)},
		{"Groups", "string", subjects(rbacv1.GroupKind)},
		{"ServiceAccounts", "string", subjects(rbacv1.ServiceAccountKind)},
	}}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
