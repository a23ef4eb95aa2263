package main

// What a container sees besides its program: the environment from the pod
// spec (literal values, fieldRefs, Secret and ConfigMap keys), its volumes
// written to files, and when it is listening.
//
// The process runs in the host's mount namespace, so a volume cannot appear
// at its mountPath. Instead each volume is written under the pod's directory
// and every environment value naming a path under a mountPath is rewritten to
// the written copy: echo-basic takes its certificate paths from the
// environment (TLS_SERVER_CERT=/etc/secret-volume/crt), which is all the
// suite's manifests rely on.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// writeVolumes writes the pod's Secret and ConfigMap volumes (all keys, or
// the listed items) and makes its emptyDirs under dir/volumes; the result
// maps volume name to directory. A missing non-optional source is an error,
// so the pod is retried until it exists, as a kubelet waits for it.
func (a *agent) writeVolumes(ctx context.Context, pod *corev1.Pod, dir string) (map[string]string, error) {
	dirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		target := filepath.Join(dir, "volumes", v.Name)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return nil, err
		}
		dirs[v.Name] = target
		var data map[string][]byte
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			secret, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && v.Secret.Optional != nil && *v.Secret.Optional {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("volume %s: secret %s: %v", v.Name, v.Secret.SecretName, err)
			}
			data, items = secret.Data, v.Secret.Items
		case v.ConfigMap != nil:
			cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("volume %s: configmap %s: %v", v.Name, v.ConfigMap.Name, err)
			}
			data = map[string][]byte{}
			for k, s := range cm.Data {
				data[k] = []byte(s)
			}
			for k, b := range cm.BinaryData {
				data[k] = b
			}
			items = v.ConfigMap.Items
		case v.EmptyDir != nil:
			continue
		default:
			return nil, fmt.Errorf("volume %s: only secret, configMap and emptyDir volumes are supported", v.Name)
		}
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, item := range items {
			value, ok := data[item.Key]
			if !ok {
				return nil, fmt.Errorf("volume %s: no key %q", v.Name, item.Key)
			}
			file := filepath.Join(target, filepath.Clean("/"+item.Path))
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(file, value, 0o600); err != nil {
				return nil, err
			}
		}
	}
	return dirs, nil
}

// resolveEnv is the container's environment as NAME=value pairs: values,
// fieldRefs (the fields the downward API offers in env), Secret and
// ConfigMap keys, with paths under a volumeMount pointed at the written copy.
func (a *agent) resolveEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, addr netip.Addr, volumes map[string]string) ([]string, error) {
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		dir, ok := volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %s: no such volume", m.Name)
		}
		mounts[filepath.Clean(m.MountPath)] = filepath.Join(dir, filepath.Clean("/"+m.SubPath))
	}
	var env []string
	for _, e := range c.Env {
		value := e.Value
		if from := e.ValueFrom; from != nil {
			var err error
			switch {
			case from.FieldRef != nil:
				value, err = a.fieldValue(pod, from.FieldRef.FieldPath, addr)
			case from.SecretKeyRef != nil:
				value, err = a.secretKey(ctx, pod.Namespace, from.SecretKeyRef)
			case from.ConfigMapKeyRef != nil:
				value, err = a.configMapKey(ctx, pod.Namespace, from.ConfigMapKeyRef)
			default:
				err = fmt.Errorf("only fieldRef, secretKeyRef and configMapKeyRef are supported")
			}
			if err != nil {
				return nil, fmt.Errorf("env %s: %v", e.Name, err)
			}
		}
		env = append(env, e.Name+"="+rewritePath(value, mounts))
	}
	return env, nil
}

// rewritePath points a value naming a path under a mount at the volume's
// written copy (the longest mountPath wins); other values are unchanged.
func rewritePath(value string, mounts map[string]string) string {
	paths := make([]string, 0, len(mounts))
	for p := range mounts {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		if value == p || strings.HasPrefix(value, strings.TrimSuffix(p, "/")+"/") {
			return mounts[p] + strings.TrimPrefix(value, p)
		}
	}
	return value
}

func (a *agent) fieldValue(pod *corev1.Pod, path string, addr netip.Addr) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return addr.String(), nil
	case "status.hostIP", "status.hostIPs":
		return a.net.gateway.String(), nil
	}
	for prefix, values := range map[string]map[string]string{
		"metadata.labels":      pod.Labels,
		"metadata.annotations": pod.Annotations,
	} {
		if strings.HasPrefix(path, prefix+"['") && strings.HasSuffix(path, "']") {
			return values[strings.TrimSuffix(strings.TrimPrefix(path, prefix+"['"), "']")], nil
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported", path)
}

func (a *agent) secretKey(ctx context.Context, namespace string, ref *corev1.SecretKeySelector) (string, error) {
	secret, err := a.client.CoreV1().Secrets(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	value, ok := secret.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("secret %s has no key %q", ref.Name, ref.Key)
	}
	return string(value), nil
}

func (a *agent) configMapKey(ctx context.Context, namespace string, ref *corev1.ConfigMapKeySelector) (string, error) {
	cm, err := a.client.CoreV1().ConfigMaps(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	value, ok := cm.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("configmap %s has no key %q", ref.Name, ref.Key)
	}
	return value, nil
}

// listenPort is the TCP port whose listening makes an echo-basic container
// ready: its HTTP port in the default HTTP mode, else 0 (any socket, for the
// gRPC, TCP and UDP modes).
func listenPort(env []string) int {
	port := 3000
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		switch name {
		case "GRPC_ECHO_SERVER", "TCP_ECHO_SERVER", "UDP_ECHO_SERVER":
			if value != "" {
				return 0
			}
		case "HTTP_PORT":
			if n, err := strconv.Atoi(value); err == nil {
				port = n
			}
		}
	}
	return port
}

// waitListening waits until the process has a listening TCP socket on port
// (any TCP listener or UDP socket when port is 0), read from its network
// namespace's /proc/PID/net tables, or fails when it exits or takes longer
// than listenTimeout.
func waitListening(p *process, port int) error {
	deadline := time.Now().Add(listenTimeout)
	for {
		if isListening(p.cmd.Process.Pid, port) {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before listening (%s)", p.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on port %d after %s", port, listenTimeout)
		}
	}
}

func isListening(pid, port int) bool {
	tables := map[string]string{"tcp": "0A", "tcp6": "0A"}
	if port == 0 {
		tables["udp"], tables["udp6"] = "07", "07"
	}
	for table, state := range tables {
		text, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(text), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != state {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if n, err := strconv.ParseUint(hexPort, 16, 16); err == nil && (port == 0 || int(n) == port) {
				return true
			}
		}
	}
	return false
}
