package kubernetes

// A small evaluator of networking.k8s.io/v1 ingress and egress rules (pod
// and namespace selectors, named and numbered ports, protocols), enough to
// ask the shipped NetworkPolicies who may reach which port of the shipped
// pods, and where each pod may send.

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// podInfo is a pod the manifests run: its Deployment, namespace, labels
// and named container ports.
type podInfo struct {
	deployment, ns string
	labels         map[string]string
	ports          map[string]int
}

// source is where traffic comes from; ns "" is outside the cluster.
type source struct {
	what     string
	ns       string
	nsLabels map[string]string
	labels   map[string]string
}

func podsOf(ms []manifest) []podInfo {
	var pods []podInfo
	for _, m := range ms {
		if m.kind() != "Deployment" {
			continue
		}
		pi := podInfo{deployment: m.name(), ns: fmt.Sprint(at(m.doc, "metadata", "namespace")),
			labels: labels(at(m.doc, "spec", "template", "metadata", "labels")), ports: map[string]int{}}
		for _, c := range list(at(m.doc, "spec", "template", "spec", "containers")) {
			for _, port := range list(obj(c)["ports"]) {
				n, _ := obj(port)["containerPort"].(int)
				pi.ports[fmt.Sprint(obj(port)["name"])] = n
			}
		}
		pods = append(pods, pi)
	}
	return pods
}

// selects reports whether a metav1.LabelSelector matches l; an empty
// selector matches everything.
func selects(sel map[string]any, l map[string]string) bool {
	for k, v := range labels(sel["matchLabels"]) {
		if got, ok := l[k]; !ok || got != v {
			return false
		}
	}
	for _, e := range list(sel["matchExpressions"]) {
		e := obj(e)
		got, has := l[fmt.Sprint(e["key"])]
		in := slices.ContainsFunc(list(e["values"]), func(v any) bool { return fmt.Sprint(v) == got })
		switch e["operator"] {
		case "In":
			if !has || !in {
				return false
			}
		case "NotIn":
			if has && in {
				return false
			}
		case "Exists":
			if !has {
				return false
			}
		case "DoesNotExist":
			if has {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// admits reports whether the policies let src reach the pod's named port
// over TCP: a pod no ingress policy selects takes everything; a selected
// pod takes what any rule of any selecting policy allows.
func admits(policies []manifest, pod podInfo, port string, src source) bool {
	isolated := false
	for _, np := range policies {
		if at(np.doc, "metadata", "namespace") != pod.ns || !selects(obj(at(np.doc, "spec", "podSelector")), pod.labels) {
			continue
		}
		types := list(at(np.doc, "spec", "policyTypes"))
		if len(types) > 0 && !slices.Contains(types, any("Ingress")) {
			continue
		}
		isolated = true
		for _, rule := range list(at(np.doc, "spec", "ingress")) {
			rule := obj(rule)
			if portMatches(list(rule["ports"]), pod, port) && peerMatches(list(rule["from"]), pod.ns, src) {
				return true
			}
		}
	}
	return !isolated
}

func portMatches(ports []any, pod podInfo, port string) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		p := obj(p)
		if proto, ok := p["protocol"]; ok && proto != "TCP" {
			continue
		}
		switch v := p["port"].(type) {
		case nil:
			return true
		case string:
			if v == port {
				return true
			}
		case int:
			if v == pod.ports[port] {
				return true
			}
		}
	}
	return false
}

func peerMatches(from []any, policyNS string, src source) bool {
	if len(from) == 0 {
		return true
	}
	for _, peer := range from {
		peer := obj(peer)
		if peer["ipBlock"] != nil {
			// Addresses are not modelled: count a block as letting in
			// everything outside the cluster, the permissive reading.
			if src.ns == "" {
				return true
			}
			continue
		}
		podSel, nsSel := obj(peer["podSelector"]), obj(peer["namespaceSelector"])
		if src.ns == "" {
			continue
		}
		nsOK := src.ns == policyNS
		if peer["namespaceSelector"] != nil {
			nsOK = selects(nsSel, src.nsLabels)
		}
		podOK := peer["podSelector"] == nil || selects(podSel, src.labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// checkNetworkPolicies asks the policies about every port of every pod of
// the pipeline named pipelineName,
// from outside the cluster, from each of the pipeline's pods, from a pod of
// the namespace that is not the pipeline's, from a pod with the pipeline's
// labels in another namespace, and from the monitoring namespace.
func checkNetworkPolicies(p *problems, ms []manifest, pipelineName string) {
	var policies []manifest
	nsLabels := map[string]map[string]string{}
	for _, m := range ms {
		switch m.kind() {
		case "NetworkPolicy":
			policies = append(policies, m)
		case "Namespace":
			l := labels(at(m.doc, "metadata", "labels"))
			l["kubernetes.io/metadata.name"] = m.name()
			nsLabels[m.name()] = l
		}
	}
	pods := podsOf(ms)
	if len(pods) == 0 {
		p.add("no pods to check the NetworkPolicies against")
		return
	}
	ns := pods[0].ns
	// A pod someone adds to the namespace later: the default deny keeps
	// it closed until a policy opens it.
	pods = append(pods, podInfo{deployment: "a pod added later", ns: ns, labels: map[string]string{"app": "debug"}, ports: map[string]int{"http": 8080}})
	sources := []source{
		{what: "a device outside the cluster"},
		{what: "a pod of namespace " + ns + " outside the pipeline", ns: ns, nsLabels: nsLabels[ns], labels: map[string]string{"app": "debug"}},
		{what: "the monitoring namespace", ns: "monitoring", nsLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring", monitoringLabel: "true"}, labels: map[string]string{"app": "prometheus"}},
	}
	for _, pod := range pods {
		sources = append(sources,
			source{what: "pod of " + pod.deployment, ns: pod.ns, nsLabels: nsLabels[pod.ns], labels: pod.labels},
			source{what: "a pod labelled as " + pod.deployment + "'s in namespace default", ns: "default",
				nsLabels: map[string]string{"kubernetes.io/metadata.name": "default"}, labels: pod.labels})
	}
	checkEgress(p, policies, pods, nsLabels, pipelineName)
	for _, pod := range pods {
		component := pod.labels[componentLabel]
		for port := range pod.ports {
			for _, src := range sources {
				pipelinePod := src.ns == pod.ns && src.labels[pipelineLabel] == pipelineName && src.labels["app.kubernetes.io/name"] == "ddnn"
				monitoring := src.ns == "monitoring"
				var want bool
				switch {
				case pod.labels[pipelineLabel] == "":
					want = false
				case component == "funnel" && port == "device":
					want = true // devices, and everyone else
				case component == "funnel" && port == "delivery", component == "inference":
					want = pipelinePod
				case port == "admin":
					want = pipelinePod || monitoring
				default:
					p.add("%s port %s: no rule in this test says who may reach it", pod.deployment, port)
					continue
				}
				if got := admits(policies, pod, port, src); got != want {
					p.add("NetworkPolicy: %s reaching %s port %s (%s): allowed %v, want %v",
						src.what, pod.deployment, port, strconv.Itoa(pod.ports[port]), got, want)
				}
			}
		}
	}
}

// destination is where a pod's traffic goes: a pod (ns set; portName
// names the port when the pod names it) or, with ns "", an address
// outside the cluster.
type destination struct {
	what     string
	ns       string
	nsLabels map[string]string
	labels   map[string]string
	port     int
	portName string
	proto    string // TCP unless set
}

// policyTypes is what a policy isolates: its policyTypes, or, unset,
// Ingress and, when it has egress rules, Egress.
func policyTypes(np manifest) []any {
	if types := list(at(np.doc, "spec", "policyTypes")); len(types) > 0 {
		return types
	}
	types := []any{"Ingress"}
	if at(np.doc, "spec", "egress") != nil {
		types = append(types, "Egress")
	}
	return types
}

// sends reports whether the policies let pod send to dst: a pod no egress
// policy selects may send anywhere; a selected pod where any rule of any
// selecting policy allows.
func sends(policies []manifest, pod podInfo, dst destination) bool {
	isolated := false
	for _, np := range policies {
		if at(np.doc, "metadata", "namespace") != pod.ns || !selects(obj(at(np.doc, "spec", "podSelector")), pod.labels) {
			continue
		}
		if !slices.Contains(policyTypes(np), any("Egress")) {
			continue
		}
		isolated = true
		for _, rule := range list(at(np.doc, "spec", "egress")) {
			rule := obj(rule)
			if egressPortMatches(list(rule["ports"]), dst) && egressPeerMatches(list(rule["to"]), pod.ns, dst) {
				return true
			}
		}
	}
	return !isolated
}

func egressPortMatches(ports []any, dst destination) bool {
	if len(ports) == 0 {
		return true
	}
	proto := dst.proto
	if proto == "" {
		proto = "TCP"
	}
	for _, p := range ports {
		p := obj(p)
		pp, ok := p["protocol"]
		if !ok {
			pp = "TCP"
		}
		if pp != proto {
			continue
		}
		switch v := p["port"].(type) {
		case nil:
			return true
		case string:
			if dst.portName != "" && v == dst.portName {
				return true
			}
		case int:
			if v == dst.port {
				return true
			}
		}
	}
	return false
}

func egressPeerMatches(to []any, policyNS string, dst destination) bool {
	if len(to) == 0 {
		return true
	}
	for _, peer := range to {
		peer := obj(peer)
		if peer["ipBlock"] != nil {
			// Addresses are not modelled, and CNIs differ on whether a
			// block covers pod addresses: count it as letting out to
			// everything, the permissive reading.
			return true
		}
		if dst.ns == "" {
			continue
		}
		nsOK := dst.ns == policyNS
		if peer["namespaceSelector"] != nil {
			nsOK = selects(obj(peer["namespaceSelector"]), dst.nsLabels)
		}
		podOK := peer["podSelector"] == nil || selects(obj(peer["podSelector"]), dst.labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// Where the shipped pods may send: the cluster's DNS, the Kafka brokers'
// SASL_SSL listener, the API server's ports.
var (
	dnsPod = map[string]string{"k8s-app": "kube-dns"}
	kubeNS = map[string]string{"kubernetes.io/metadata.name": "kube-system"}
	kafkNS = map[string]string{"kubernetes.io/metadata.name": "kafka"}
)

const kafkaTLSPort = 9093

// checkEgress asks the policies where each pod of the pipeline may send:
// DNS for all; Kafka (TLS port) for the funnel, connectors and scaler
// (the connectors write their tiers' decisions; the replicas send
// nothing anywhere); the replicas and the scaler's
// replica list for the connectors; the API server for the scaler; and
// nothing else: not another port of those pods, not Kafka's plaintext
// port, not a pod outside the pipeline, not the internet.
func checkEgress(p *problems, policies []manifest, pods []podInfo, nsLabels map[string]map[string]string, pipelineName string) {
	var dests []destination
	type want func(from string) bool
	wants := map[string]want{}
	add := func(d destination, w want) { dests = append(dests, d); wants[d.what] = w }
	is := func(cs ...string) want { return func(from string) bool { return slices.Contains(cs, from) } }
	nobody := is()

	add(destination{what: "DNS over UDP", ns: "kube-system", nsLabels: kubeNS, labels: dnsPod, port: 53, proto: "UDP"}, is("funnel", "connector", "scaler", "inference"))
	add(destination{what: "DNS over TCP", ns: "kube-system", nsLabels: kubeNS, labels: dnsPod, port: 53}, is("funnel", "connector", "scaler", "inference"))
	add(destination{what: "a pod of kube-system on port 443", ns: "kube-system", nsLabels: kubeNS, labels: map[string]string{"app": "x"}, port: 443}, is("scaler"))
	add(destination{what: "a pod of kube-system on port 80", ns: "kube-system", nsLabels: kubeNS, labels: map[string]string{"app": "x"}, port: 80}, nobody)
	add(destination{what: "Kafka's TLS port", ns: "kafka", nsLabels: kafkNS, labels: map[string]string{"app": "kafka"}, port: kafkaTLSPort}, is(kafkaClients...))
	add(destination{what: "Kafka's plaintext port", ns: "kafka", nsLabels: kafkNS, labels: map[string]string{"app": "kafka"}, port: 9092}, nobody)
	add(destination{what: "the API server (443)", port: 443}, is("scaler"))
	add(destination{what: "the API server (6443)", port: 6443}, is("scaler"))
	add(destination{what: "an address outside the cluster on port 80", port: 80}, nobody)
	add(destination{what: "an address outside the cluster on port 9093", port: kafkaTLSPort}, nobody)
	// A pod of the namespace outside the pipeline, on every port the
	// pipeline's pods listen on.
	ns := pods[0].ns
	stranger := map[int]bool{}
	for _, pod := range pods {
		for _, port := range pod.ports {
			stranger[port] = true
		}
	}
	for _, port := range slices.Sorted(maps.Keys(stranger)) {
		add(destination{what: fmt.Sprintf("a pod of namespace %s outside the pipeline, port %d", ns, port), ns: ns, nsLabels: nsLabels[ns], labels: map[string]string{"app": "debug"}, port: port}, nobody)
	}
	for _, pod := range pods {
		if pod.labels[pipelineLabel] != pipelineName {
			continue
		}
		to := pod.labels[componentLabel]
		for name, port := range pod.ports {
			var w want
			switch {
			case to == "inference" && name == "http", to == "scaler" && name == "admin":
				w = is("connector")
			default:
				w = nobody
			}
			add(destination{what: fmt.Sprintf("%s port %s", pod.deployment, name), ns: pod.ns, nsLabels: nsLabels[pod.ns], labels: pod.labels, port: port, portName: name}, w)
			add(destination{what: fmt.Sprintf("a pod labelled as %s's in namespace default, port %s", pod.deployment, name), ns: "default",
				nsLabels: map[string]string{"kubernetes.io/metadata.name": "default"}, labels: pod.labels, port: port, portName: name}, nobody)
		}
	}
	for _, pod := range pods {
		from := pod.labels[componentLabel]
		if pod.labels[pipelineLabel] != pipelineName {
			from = "" // a pod added later: the default deny keeps it in
		}
		for _, d := range dests {
			want := wants[d.what](from)
			if got := sends(policies, pod, d); got != want {
				p.add("NetworkPolicy egress: %s sending to %s (%d/%s): allowed %v, want %v", pod.deployment, d.what, d.port, cmp.Or(d.proto, "TCP"), got, want)
			}
		}
	}
}
