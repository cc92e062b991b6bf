package kubernetes

// Checks that the manifests are secure as shipped, not only securable: the
// pipeline in the ConfigMap uses TLS and SCRAM to Kafka and HTTPS with
// device tokens on the device port, with every file it names mounted from
// the Secret and every mounted key named by it; the Secret is made from
// files, never from literals on kubectl's command line; every pod runs one
// pinned image.

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/ddnn-continuum/ddnn/internal/pipeline"
)

// secretFile is a file the pipeline names under secretsDir: the setting
// that names it and the components that read it.
type secretFile struct {
	setting    string
	path       string
	components []string
}

// kafkaClients are the components that talk to Kafka.
var kafkaClients = []string{"funnel", "connector", "scaler"}

// secretFiles lists the files the pipeline names, with who reads them.
func secretFiles(pl *pipeline.Pipeline) []secretFile {
	files := []secretFile{
		{"auth.service_token_file", pl.Auth.ServiceTokenFile, []string{"funnel", "inference", "connector"}},
		{"auth.devices_file", pl.Auth.DevicesFile, []string{"funnel"}},
		{"funnel.tls.cert_file", pl.Funnel.TLS.CertFile, []string{"funnel"}},
		{"funnel.tls.key_file", pl.Funnel.TLS.KeyFile, []string{"funnel"}},
	}
	if t := pl.Kafka.TLS; t != nil {
		files = append(files, secretFile{"kafka.tls.root_cas_file", t.RootCAsFile, kafkaClients})
	}
	for i, s := range pl.Kafka.SASL {
		files = append(files, secretFile{fmt.Sprintf("kafka.sasl[%d].password_file", i), s.PasswordFile, kafkaClients})
	}
	return files
}

// checkSecureAsShipped holds the ConfigMap's pipeline and the pods'
// Secret mounts to the secure defaults.
func checkSecureAsShipped(p *problems, ms []manifest, pl *pipeline.Pipeline) {
	// Kafka: TLS verified against a mounted CA, SCRAM with a mounted
	// password file.
	k := pl.Kafka
	switch t := k.TLS; {
	case t == nil || !t.Enabled:
		p.add("pipeline: kafka.tls.enabled is not true: the pods would send the SASL password and every record in the clear")
	case t.SkipCertVerify:
		p.add("pipeline: kafka.tls.skip_cert_verify is true: anyone on the path could pose as the brokers")
	case t.RootCAsFile == "":
		p.add("pipeline: kafka.tls.root_cas_file is not set: name the brokers' CA, mounted from %s", secretName)
	}
	if len(k.SASL) == 0 {
		p.add("pipeline: kafka.sasl is empty: the pods would connect to Kafka unauthenticated")
	}
	for i, s := range k.SASL {
		if s.Mechanism != pipeline.SASLScramSHA256 && s.Mechanism != pipeline.SASLScramSHA512 {
			p.add("pipeline: kafka.sasl[%d].mechanism %s, want SCRAM-SHA-256 or SCRAM-SHA-512", i, s.Mechanism)
		}
		if s.PasswordFile == "" {
			p.add("pipeline: kafka.sasl[%d]: no password_file (password_env %q), want a file under %s", i, s.PasswordEnv, secretsDir)
		}
	}

	// Devices: HTTPS on the device port, device tokens, service tokens.
	if !pl.Funnel.TLS.Enabled() || pl.Funnel.TLS.KeyFile == "" {
		p.add("pipeline: funnel.tls.cert_file and key_file are not set: the device port would serve plain HTTP and device tokens would cross the network in the clear")
	}
	if pl.Auth.Devices != pipeline.AuthToken || pl.Auth.DevicesFile == "" {
		p.add("pipeline: auth.devices is %q with devices_file %q, want token with a file under %s", pl.Auth.Devices, pl.Auth.DevicesFile, secretsDir)
	}
	if pl.Auth.Service != pipeline.AuthToken || pl.Auth.ServiceTokenFile == "" {
		p.add("pipeline: auth.service is %q with service_token_file %q, want token with a file under %s", pl.Auth.Service, pl.Auth.ServiceTokenFile, secretsDir)
	}

	// Every file the pipeline names is a key of the Secret, mounted in
	// exactly the pods that read it; no pod mounts a key nobody reads.
	need := map[string]map[string]string{} // component -> key -> setting
	for _, f := range secretFiles(pl) {
		if f.path == "" {
			continue
		}
		if path.Dir(f.path) != secretsDir {
			p.add("pipeline: %s %s is not a file of the Secret mounted at %s", f.setting, f.path, secretsDir)
			continue
		}
		for _, c := range f.components {
			if need[c] == nil {
				need[c] = map[string]string{}
			}
			need[c][path.Base(f.path)] = f.setting
		}
	}
	for _, m := range ms {
		if m.kind() != "Deployment" {
			continue
		}
		where := m.file + " " + m.name()
		component := labels(at(m.doc, "spec", "template", "metadata", "labels"))[componentLabel]
		mounted := map[string]bool{}
		for _, v := range list(at(m.doc, "spec", "template", "spec", "volumes")) {
			if at(v, "secret", "secretName") != secretName {
				continue
			}
			for _, it := range list(at(v, "secret", "items")) {
				key, file := fmt.Sprint(obj(it)["key"]), fmt.Sprint(obj(it)["path"])
				if key != file {
					// The pipeline names paths; a key under another name
					// would hide which key a setting reads.
					mounted[key+" as "+file] = true
					continue
				}
				mounted[key] = true
			}
		}
		for _, key := range slices.Sorted(maps.Keys(need[component])) {
			if !mounted[key] {
				p.add("%s: %s names %s/%s, which the pod does not mount from %s", where, need[component][key], secretsDir, key, secretName)
			}
		}
		for _, key := range slices.Sorted(maps.Keys(mounted)) {
			if _, ok := need[component][key]; !ok {
				p.add("%s: mounts %s key %s, which the pipeline does not name for a %s (a secret mounted unused)", where, secretName, key, component)
			}
		}
		if component == "funnel" {
			checkFunnelProbes(p, where, m)
		}
	}
}

// checkFunnelProbes: probes of the device port speak HTTPS, as it does.
func checkFunnelProbes(p *problems, where string, m manifest) {
	for _, c := range list(at(m.doc, "spec", "template", "spec", "containers")) {
		for _, probe := range []string{"readinessProbe", "livenessProbe"} {
			g := obj(at(c, probe, "httpGet"))
			if g == nil {
				continue
			}
			if g["port"] == "device" && g["scheme"] != "HTTPS" {
				p.add("%s: %s on the device port has scheme %v, want HTTPS (the port serves HTTPS only)", where, probe, g["scheme"])
			}
		}
	}
}

// pinnedTag is an image reference with a tag other than latest, or a
// digest.
var pinnedTag = regexp.MustCompile(`^ddnn(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$`)

// checkImages: every container runs the same pinned ddnn image, and the
// kustomization pins the same one, so `kubectl apply -k` never pulls
// whatever latest is that day.
func checkImages(p *problems, ms []manifest) {
	images := map[string]bool{}
	for _, m := range ms {
		if m.kind() != "Deployment" {
			continue
		}
		spec := obj(at(m.doc, "spec", "template", "spec"))
		for _, c := range append(slices.Clone(list(spec["containers"])), list(spec["initContainers"])...) {
			img := fmt.Sprint(obj(c)["image"])
			images[img] = true
			if !pinnedTag.MatchString(img) || strings.HasSuffix(img, ":latest") {
				p.add("%s %s: image %s, want ddnn with a pinned tag (not latest) or a digest", m.file, m.name(), img)
			}
		}
	}
	if len(images) != 1 {
		p.add("images %v, want one image for every pod", slices.Sorted(maps.Keys(images)))
	}
	for _, m := range ms {
		if m.kind() != "Kustomization" {
			continue
		}
		var entries []map[string]any
		for _, e := range list(m.doc["images"]) {
			if obj(e)["name"] == "ddnn" {
				entries = append(entries, obj(e))
			}
		}
		if len(entries) != 1 {
			p.add("%s: %d images: entries for ddnn, want one that pins the tag", m.file, len(entries))
			continue
		}
		e := entries[0]
		tag, digest := fmt.Sprint(e["newTag"]), e["digest"]
		switch {
		case digest != nil:
		case e["newTag"] == nil || tag == "latest":
			p.add("%s: images: ddnn newTag %v, want a pinned tag (not latest) or a digest", m.file, e["newTag"])
		case !images["ddnn:"+tag]:
			p.add("%s: images: ddnn newTag %s differs from the manifests' %v", m.file, tag, slices.Sorted(maps.Keys(images)))
		}
	}
}

// secretCommands are the `kubectl create secret` commands in text (a
// markdown page or a YAML comment), each with its continuation lines
// joined.
func secretCommands(text string) []string {
	var cmds []string
	cur := ""
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		cont := strings.HasSuffix(line, "\\")
		cur += " " + strings.TrimSuffix(line, "\\")
		if cont {
			continue
		}
		if strings.Contains(cur, "kubectl") && strings.Contains(cur, "create secret") {
			cmds = append(cmds, strings.TrimSpace(cur))
		}
		cur = ""
	}
	return cmds
}

// checkSecretRecipe: the recipe in text makes the Secret from files: no
// command with --from-literal (a value on a command line is in ps and the
// shell's history), one with a --from-file for every key, and the service
// token from `ddnn token`.
func checkSecretRecipe(p *problems, where, text string, keys []string) {
	cmds := secretCommands(text)
	if len(cmds) == 0 {
		p.add("%s: no `kubectl create secret` recipe", where)
	}
	complete := false
	for _, c := range cmds {
		if strings.Contains(c, "--from-literal") {
			p.add("%s: %q puts a secret on kubectl's command line (--from-literal); use --from-file", where, c)
		}
		missing := slices.DeleteFunc(slices.Clone(keys), func(k string) bool {
			return regexp.MustCompile(`--from-file=` + regexp.QuoteMeta(k) + `(=|\s|$)`).MatchString(c)
		})
		if len(missing) == 0 {
			complete = true
		}
	}
	if !complete {
		p.add("%s: no `kubectl create secret` recipe makes every key %v with --from-file", where, keys)
	}
	if !strings.Contains(text, "ddnn token > service-token") {
		p.add("%s: the Secret recipe does not make the service token with `ddnn token > service-token`", where)
	}
}
