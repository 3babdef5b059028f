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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

type column struct {
	name, typ string
	cell      func(obj runtime.Object) interface{}
}

type columnTable struct{ columns []column }

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
		cells := []interface{}{m.GetName()}
		for _, col := range c.columns {
			cells = append(cells, col.cell(obj))
		}
		cells = append(cells, age(m.GetCreationTimestamp()))
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
		for _, col := range c.columns {
			table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: col.name, Type: col.typ})
		}
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: "Age", Type: "string"})
	}
	return &table, nil
}

func tableFor(resource string) *columnTable {
	switch resource {
	case "namespaces":
		return &columnTable{[]column{{"Status", "string", func(o runtime.Object) interface{} {
			return string(o.(*corev1.Namespace).Status.Phase)
		}}}}
	case "configmaps":
		return &columnTable{[]column{{"Data", "integer", func(o runtime.Object) interface{} {
			cm := o.(*corev1.ConfigMap)
			return int64(len(cm.Data) + len(cm.BinaryData))
		}}}}
	case "services":
		return &columnTable{[]column{
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
		return &columnTable{[]column{
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
		return &columnTable{[]column{
			{"Type", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Type }},
			{"Reason", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Reason }},
			{"Object", "string", func(o runtime.Object) interface{} {
				e := o.(*corev1.Event)
				return strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			}},
			{"Message", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Message }},
		}}
	case "leases":
		return &columnTable{[]column{{"Holder", "string", func(o runtime.Object) interface{} {
			l := o.(*coordinationv1.Lease)
			if l.Spec.HolderIdentity == nil {
				return ""
			}
			return *l.Spec.HolderIdentity
		}}}}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
