package kubernetes

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// policyName is the ValidatingAdmissionPolicy that bounds the scaler's
// patches of the inference Deployments to a rollout.
const policyName = "ddnn-scaler-rollouts-only"

// checkRollouts: every inference Deployment rolls out without a pod less
// than wanted (maxUnavailable 0, maxSurge 1, as Replace expects), and an
// admission policy, bound in the namespace and failing closed, lets the
// scaler's account change nothing of a Deployment but the pod template's
// ddnn.io/ annotations: not the pods' spec, labels, the selector or the
// strategy.
func checkRollouts(p *problems, ms []manifest) {
	for _, m := range ms {
		if m.kind() != "Deployment" || labels(at(m.doc, "spec", "template", "metadata", "labels"))[componentLabel] != "inference" {
			continue
		}
		s := obj(at(m.doc, "spec", "strategy"))
		ru := obj(s["rollingUpdate"])
		if s["type"] != "RollingUpdate" || fmt.Sprint(ru["maxUnavailable"]) != "0" || fmt.Sprint(ru["maxSurge"]) != "1" {
			p.add("%s %s: strategy %v, want RollingUpdate with maxUnavailable 0 and maxSurge 1 (a rollout keeps every replica until its successor is ready)", m.file, m.name(), s)
		}
	}
	var policy, binding map[string]any
	for _, m := range ms {
		switch {
		case m.kind() == "ValidatingAdmissionPolicy" && m.name() == policyName:
			policy = m.doc
		case m.kind() == "ValidatingAdmissionPolicyBinding" && at(m.doc, "spec", "policyName") == policyName:
			binding = m.doc
		}
	}
	if policy == nil || binding == nil {
		p.add("no ValidatingAdmissionPolicy %s with its binding: the scaler's patch of a Deployment could relabel pods", policyName)
		return
	}
	spec := obj(policy["spec"])
	if spec["failurePolicy"] != "Fail" {
		p.add("policy %s: failurePolicy %v, want Fail (a policy that cannot run must not let the patch through)", policyName, spec["failurePolicy"])
	}
	rules := fmt.Sprint(at(spec, "matchConstraints", "resourceRules"))
	if !strings.Contains(rules, "apps") || !strings.Contains(rules, "deployments") || !strings.Contains(rules, "UPDATE") {
		p.add("policy %s: resourceRules %s, want UPDATE of apps deployments", policyName, rules)
	}
	if got, want := fmt.Sprint(at(spec, "matchConditions", "0", "expression")), `request.userInfo.username == "system:serviceaccount:ddnn:`+apiCallerSA+`"`; got != want || len(list(spec["matchConditions"])) != 1 {
		p.add("policy %s: matchConditions %v, want only %s", policyName, spec["matchConditions"], want)
	}
	var checks []string
	for _, v := range list(spec["validations"]) {
		checks = append(checks, strings.Join(strings.Fields(fmt.Sprint(obj(v)["expression"])), " "))
	}
	for _, want := range []string{
		"object.spec.template.spec == oldObject.spec.template.spec",
		"object.spec.template.metadata.labels == oldObject.spec.template.metadata.labels",
		"object.spec.selector == oldObject.spec.selector",
		"object.spec.strategy == oldObject.spec.strategy",
		`k.startsWith("ddnn.io/")`,
	} {
		if !slices.ContainsFunc(checks, func(c string) bool { return strings.Contains(c, want) }) {
			p.add("policy %s: no validation checks %s", policyName, want)
		}
	}
	bs := obj(binding["spec"])
	if fmt.Sprint(bs["validationActions"]) != "[Deny]" {
		p.add("policy binding of %s: validationActions %v, want [Deny]", policyName, bs["validationActions"])
	}
	if ns := at(bs, "matchResources", "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"); ns != "ddnn" {
		p.add("policy binding of %s: namespace %v, want ddnn", policyName, ns)
	}
}

// rolloutMutations break what checkRollouts holds, one at a time.
func rolloutMutations(t *testing.T) []mutation {
	policy := func(ms []manifest) map[string]any { return doc(t, ms, "ValidatingAdmissionPolicy", policyName) }
	binding := func(ms []manifest) map[string]any {
		return doc(t, ms, "ValidatingAdmissionPolicyBinding", policyName)
	}
	cases := []mutation{
		{"the Role may patch any Deployment", func(ms []manifest) {
			remove(t, doc(t, ms, "Role", "ddnn-scaler"), "rules", "1", "resourceNames")
		}, "grants patch on deployments"},
		{"no admission policy", func(ms []manifest) { policy(ms)["kind"] = "Removed" }, "no ValidatingAdmissionPolicy"},
		{"the policy unbound", func(ms []manifest) { binding(ms)["kind"] = "Removed" }, "no ValidatingAdmissionPolicy"},
		{"the policy only warns", func(ms []manifest) {
			set(t, binding(ms), []any{"Warn"}, "spec", "validationActions")
		}, "want [Deny]"},
		{"the policy fails open", func(ms []manifest) { set(t, policy(ms), "Ignore", "spec", "failurePolicy") }, "want Fail"},
		{"the policy checks another account", func(ms []manifest) {
			set(t, policy(ms), `request.userInfo.username == "system:serviceaccount:ddnn:default"`, "spec", "matchConditions", "0", "expression")
		}, "matchConditions"},
		{"the policy lets labels change", func(ms []manifest) { remove(t, policy(ms), "spec", "validations", "1") }, "metadata.labels"},
		{"the policy lets the pod spec change", func(ms []manifest) { remove(t, policy(ms), "spec", "validations", "0") }, "template.spec"},
		{"the policy lets any annotation change", func(ms []manifest) { remove(t, policy(ms), "spec", "validations", "3") }, "ddnn.io/"},
	}
	for _, tier := range []string{"edge", "fog", "cloud"} {
		name := "ddnn-inference-" + tier
		cases = append(cases,
			mutation{name + " may lose a pod in a rollout", func(ms []manifest) {
				set(t, deployment(t, ms, name), 1, "spec", "strategy", "rollingUpdate", "maxUnavailable")
			}, name},
			mutation{name + " recreated", func(ms []manifest) {
				set(t, deployment(t, ms, name), map[string]any{"type": "Recreate"}, "spec", "strategy")
			}, name})
	}
	return cases
}
