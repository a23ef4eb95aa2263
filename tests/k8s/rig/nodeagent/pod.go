package main

// One pod's life on the agent: what to do with its image, the namespace and
// address it gets, its volumes written to files, its containers' environment
// resolved as a kubelet would, the echo-basic processes, the status reported,
// and the stop on deletion.

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// How long a started echo-basic may take to listen before the start counts
// as failed (and is retried).
const listenTimeout = 20 * time.Second

// How long a stopped process gets between SIGTERM and SIGKILL. Shorter than
// a pod's usual 30 s: nothing a test runs needs to drain.
const stopGrace = 3 * time.Second

// Reasons this agent writes into pod status, so a reader knows who wrote them.
const (
	reasonUnsupportedImage = "UnsupportedImage"
	reasonPretendReady     = "NodeAgentPretendReady"
	reasonProcessExited    = "ProcessExited"
)

type podKind int

const (
	kindUnsupported podKind = iota
	kindEcho
	kindDNS
	kindPretend
)

// podRun is what runs for one pod.
type podRun struct {
	uid   types.UID
	addr  netip.Addr
	netns string
	dir   string
	procs []*process
}

type process struct {
	container string
	cmd       *exec.Cmd
	exited    chan struct{}
	stopping  bool
}

type agent struct {
	client kubernetes.Interface
	cfg    config
	net    *network
	// This binary, which serves DNS for pods of a --dns-image.
	self string

	mu   sync.Mutex
	pods map[string]*podRun
}

func newAgent(client kubernetes.Interface, cfg config, net *network) *agent {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return &agent{client: client, cfg: cfg, net: net, self: self, pods: map[string]*podRun{}}
}

// imageRepository is an image reference without its tag or digest.
func imageRepository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// classify says what the agent does with a pod: run it when every container
// is the echo image, pretend when every container is a pretend-ready image.
func (a *agent) classify(pod *corev1.Pod) podKind {
	matches := func(list []string) bool {
		for _, c := range pod.Spec.Containers {
			found := false
			for _, repo := range list {
				found = found || imageRepository(c.Image) == repo
			}
			if !found {
				return false
			}
		}
		return len(pod.Spec.Containers) > 0 && len(pod.Spec.InitContainers) == 0
	}
	switch {
	case matches(a.cfg.echoImages):
		return kindEcho
	case matches(a.cfg.dnsImages):
		return kindDNS
	case matches(a.cfg.pretendReady):
		return kindPretend
	default:
		return kindUnsupported
	}
}

// sync brings the agent in line with the pod under key, as the informer sees it.
func (a *agent) sync(ctx context.Context, indexer cache.Indexer, key string) error {
	obj, exists, err := indexer.GetByKey(key)
	if err != nil {
		return err
	}
	a.mu.Lock()
	run := a.pods[key]
	a.mu.Unlock()
	if !exists {
		a.stop(key)
		return nil
	}
	pod := obj.(*corev1.Pod)
	if run != nil && run.uid != pod.UID {
		// Deleted and created again under the same name.
		a.stop(key)
		run = nil
	}
	if pod.DeletionTimestamp != nil {
		a.stop(key)
		// What a kubelet does once the containers are gone: confirm the
		// deletion. The UID precondition spares a pod recreated meanwhile.
		grace := int64(0)
		err := a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &grace,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete: %v", err)
		}
		log.Printf("pod %s: stopped and deleted", key)
		return nil
	}
	if run != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	kind := a.classify(pod)
	if kind == kindUnsupported {
		return a.reportUnsupported(ctx, pod)
	}
	return a.start(ctx, key, pod, kind)
}

// reportUnsupported leaves the pod Pending with every container waiting for
// a reason that names this agent's limit (written once).
func (a *agent) reportUnsupported(ctx context.Context, pod *corev1.Pod) error {
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Waiting != nil && s.State.Waiting.Reason == reasonUnsupportedImage {
			return nil
		}
	}
	var statuses []corev1.ContainerStatus
	for _, c := range pod.Spec.Containers {
		statuses = append(statuses, corev1.ContainerStatus{
			Name:  c.Name,
			Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: reasonUnsupportedImage,
				Message: "the test node agent runs only " + strings.Join(a.cfg.echoImages, ", ") + " (as echo-basic) and " +
					strings.Join(a.cfg.dnsImages, ", ") + " (as a whoami DNS server)",
			}},
		})
	}
	log.Printf("pod %s/%s: not run, image %q is neither the echo nor the DNS image", pod.Namespace, pod.Name, pod.Spec.Containers[0].Image)
	return a.patchStatus(ctx, pod, corev1.PodStatus{
		Phase:             corev1.PodPending,
		ContainerStatuses: statuses,
		Conditions: []corev1.PodCondition{{
			Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: reasonUnsupportedImage,
			LastTransitionTime: metav1.Now(),
		}},
	})
}

// start gives the pod a namespace and an address, writes its volumes, starts
// its processes (echo-basic, or the DNS server; none when pretending) and
// reports it Running and Ready once they listen.
func (a *agent) start(ctx context.Context, key string, pod *corev1.Pod, kind podKind) (err error) {
	run := kind != kindPretend
	addr, err := a.net.allocate()
	if err != nil {
		return err
	}
	netns, err := a.net.addPod(addr)
	if err != nil {
		a.net.release(addr)
		return err
	}
	r := &podRun{
		uid:   pod.UID,
		addr:  addr,
		netns: netns,
		dir:   filepath.Join(a.cfg.stateDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
	}
	defer func() {
		if err != nil {
			r.stop()
			a.net.removePod(addr)
		}
	}()
	if run {
		volumes, err := a.writeVolumes(ctx, pod, r.dir)
		if err != nil {
			return err
		}
		for _, c := range pod.Spec.Containers {
			env, err := a.resolveEnv(ctx, pod, &c, addr, volumes)
			if err != nil {
				return fmt.Errorf("container %s: %v", c.Name, err)
			}
			program, port := []string{a.cfg.echoBinary}, listenPort(env)
			if kind == kindDNS {
				program, port = []string{a.self, "serve-dns"}, 0
			}
			p, err := a.startProcess(r, c.Name, env, program)
			if err != nil {
				return fmt.Errorf("container %s: %v", c.Name, err)
			}
			r.procs = append(r.procs, p)
			if err := waitListening(p, port); err != nil {
				return fmt.Errorf("container %s: %v; log %s", c.Name, err, filepath.Join(r.dir, c.Name+".log"))
			}
		}
	}
	a.mu.Lock()
	a.pods[key] = r
	a.mu.Unlock()
	for _, p := range r.procs {
		go a.watchExit(key, pod, r, p)
	}
	log.Printf("pod %s: running at %s in netns %s (%d processes)", key, addr, netns, len(r.procs))
	return a.patchStatus(ctx, pod, a.runningStatus(pod, r, run))
}

// runningStatus is what a kubelet reports for a pod whose containers all run
// and are ready.
func (a *agent) runningStatus(pod *corev1.Pod, r *podRun, run bool) corev1.PodStatus {
	now := metav1.Now()
	reason, message := "", ""
	if !run {
		reason, message = reasonPretendReady, "the test node agent runs nothing for this image; reported Ready so that waits for it end"
	}
	condition := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now, Reason: reason, Message: message}
	}
	var statuses []corev1.ContainerStatus
	for i, c := range pod.Spec.Containers {
		started := true
		id := "nodeagent://none"
		if i < len(r.procs) {
			id = fmt.Sprintf("nodeagent://%d", r.procs[i].cmd.Process.Pid)
		}
		statuses = append(statuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     c.Image,
			ContainerID: id,
			Ready:       true,
			Started:     &started,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    a.net.gateway.String(),
		HostIPs:   []corev1.HostIP{{IP: a.net.gateway.String()}},
		PodIP:     r.addr.String(),
		PodIPs:    []corev1.PodIP{{IP: r.addr.String()}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			condition(corev1.PodReadyToStartContainers),
			condition(corev1.PodInitialized),
			condition(corev1.ContainersReady),
			condition(corev1.PodReady),
		},
		ContainerStatuses: statuses,
	}
}

// patchStatus merges status into the pod's (conditions by type, container
// statuses by name), as long as the pod is still the one seen.
func (a *agent) patchStatus(ctx context.Context, pod *corev1.Pod, status corev1.PodStatus) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID},
		"status":   status,
	})
	if err != nil {
		return err
	}
	_, err = a.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch status: %v", err)
	}
	return nil
}

// startProcess runs program inside the pod's namespace with env, its output
// in the pod directory. The process gets SIGKILL if the agent dies.
func (a *agent) startProcess(r *podRun, container string, env, program []string) (*process, error) {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(r.dir, container+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	output, written := timestampedWriter(logFile)
	// `ip netns exec` enters the namespace and execs the program, so the
	// process started is the program itself.
	cmd := exec.Command("ip", append([]string{"netns", "exec", r.netns}, program...)...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cmd.Stdout = output
	cmd.Stderr = output
	cmd.Dir = r.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		output.Close()
		<-written
		return nil, err
	}
	p := &process{container: container, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		output.Close()
		<-written
		close(p.exited)
	}()
	return p, nil
}

// watchExit reports a process that ends without being stopped: the pod is no
// longer Ready (nothing restarts it; a test that sees this has found a bug).
func (a *agent) watchExit(key string, pod *corev1.Pod, r *podRun, p *process) {
	<-p.exited
	a.mu.Lock()
	current := a.pods[key]
	stopping := p.stopping
	a.mu.Unlock()
	if stopping || current != r {
		return
	}
	code := p.cmd.ProcessState.ExitCode()
	log.Printf("pod %s: container %s exited (%d) unasked", key, p.container, code)
	image := ""
	for _, c := range pod.Spec.Containers {
		if c.Name == p.container {
			image = c.Image
		}
	}
	now := metav1.Now()
	_ = a.patchStatus(context.Background(), pod, corev1.PodStatus{
		Conditions: []corev1.PodCondition{
			{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: reasonProcessExited, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: reasonProcessExited, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:  p.container,
			Image: image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(code), Reason: reasonProcessExited, FinishedAt: now,
			}},
		}},
	})
}

// stop ends what runs for key (processes, then the namespace).
func (a *agent) stop(key string) {
	a.mu.Lock()
	r := a.pods[key]
	delete(a.pods, key)
	for _, p := range r.procsOrNil() {
		p.stopping = true
	}
	a.mu.Unlock()
	if r == nil {
		return
	}
	r.stop()
	a.net.removePod(r.addr)
}

func (a *agent) stopAll() {
	a.mu.Lock()
	keys := make([]string, 0, len(a.pods))
	for key := range a.pods {
		keys = append(keys, key)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, key := range keys {
		wg.Add(1)
		go func() { defer wg.Done(); a.stop(key) }()
	}
	wg.Wait()
}

func (r *podRun) procsOrNil() []*process {
	if r == nil {
		return nil
	}
	return r.procs
}

// stop sends SIGTERM to every process group, SIGKILL after stopGrace, and
// kills whatever else still runs in the namespace.
func (r *podRun) stop() {
	for _, p := range r.procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(stopGrace)
	for _, p := range r.procs {
		select {
		case <-p.exited:
		case <-time.After(time.Until(deadline)):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	killNetns(r.netns)
}
