// Command nodeagent is a stand-in kubelet for portcullis's tests, not a
// kubelet: it registers one Ready Node, and for each pod bound to that Node
// whose container runs the Gateway API conformance echo image it starts
// echo-basic (built from sigs.k8s.io/gateway-api/conformance/echo-basic) as a
// plain process in the pod's own network namespace, then reports the pod
// Running and Ready with that namespace's address. When a pod is deleted it
// stops the process, removes the namespace and deletes the pod with grace 0,
// as a kubelet confirms a termination. It pulls no image, runs no container
// runtime and enforces no resource, probe or security setting.
//
// Pods of the suite's coredns image get a whoami DNS server of the agent's
// own (dns.go). Pods of other images are not run: they stay Pending with the waiting reason
// UnsupportedImage, unless their image matches --pretend-ready-image, in which
// case they get a namespace and an address and are reported Ready with
// nothing running (what a suite needs when it only waits for them).
// Container logs are served as a kubelet serves them (logs.go).
//
// Needs root (network namespaces, a bridge, veth pairs) and iproute2.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

// The echo image of the conformance suite's manifests, any tag
// (conformance/base/manifests.yaml and tests/*.yaml at v1.6.1 use
// echo-basic:v1.5.1, v1.6.0-dev.2 and v1.6.0-dev.3).
const defaultEchoImage = "registry.k8s.io/gateway-api/echo-basic"

// The suite's UDP backend (conformance/base/manifests.yaml), run as the
// agent's own whoami DNS server (dns.go).
const defaultDNSImage = "registry.k8s.io/coredns/coredns"

// How often the Node's Ready condition is renewed. Nothing reads the
// heartbeat (the rig runs no node-lifecycle controller); it only keeps the
// Node looking alive to a person reading it.
const heartbeatInterval = 20 * time.Second

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type config struct {
	kubeconfig   string
	nodeName     string
	podCIDR      string
	bridge       string
	echoBinary   string
	echoImages   multiFlag
	dnsImages    multiFlag
	pretendReady multiFlag
	stateDir     string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-dns" {
		log.Fatal(serveDNS())
	}
	var cfg config
	flag.StringVar(&cfg.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of a user allowed to write Nodes and Pods")
	flag.StringVar(&cfg.nodeName, "node-name", "", "the Node to register and run pods for")
	flag.StringVar(&cfg.podCIDR, "pod-cidr", "", "IPv4 prefix (/24 to /29) of this node's pods; its first address goes to the bridge")
	flag.StringVar(&cfg.bridge, "bridge", "", "bridge name (at most 10 bytes); prefixes every namespace and veth made")
	flag.StringVar(&cfg.echoBinary, "echo-basic", "", "path of the echo-basic binary")
	flag.Var(&cfg.echoImages, "echo-image", "image repository run as echo-basic, any tag (repeatable; default "+defaultEchoImage+")")
	flag.Var(&cfg.dnsImages, "dns-image", "image repository run as a whoami DNS server on UDP 53 (repeatable; default "+defaultDNSImage+")")
	flag.Var(&cfg.pretendReady, "pretend-ready-image", "image repository reported Ready without running anything (repeatable)")
	flag.StringVar(&cfg.stateDir, "state-dir", "", "directory for pods' volumes and logs")
	flag.Parse()
	if cfg.nodeName == "" || cfg.podCIDR == "" || cfg.bridge == "" || cfg.echoBinary == "" || cfg.stateDir == "" {
		log.Fatal("--node-name, --pod-cidr, --bridge, --echo-basic and --state-dir are required")
	}
	if len(cfg.bridge) > 10 {
		log.Fatalf("--bridge %q is longer than 10 bytes (veth names must fit in 15)", cfg.bridge)
	}
	if len(cfg.echoImages) == 0 {
		cfg.echoImages = multiFlag{defaultEchoImage}
	}
	if len(cfg.dnsImages) == 0 {
		cfg.dnsImages = multiFlag{defaultDNSImage}
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := run(cfg); err != nil {
		log.Fatal(err)
	}
}

func run(cfg config) error {
	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %v", err)
	}
	restConfig.UserAgent = "portcullis-test-nodeagent"
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	podNet, err := newNetwork(cfg.bridge, cfg.podCIDR)
	if err != nil {
		return err
	}
	defer podNet.close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	agent := newAgent(client, cfg, podNet)
	if err := agent.serveLogs(); err != nil {
		return err
	}
	if err := registerNode(ctx, client, cfg, podNet); err != nil {
		return err
	}
	go heartbeat(ctx, client, cfg.nodeName)

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.nodeName).String()
		}))
	podInformer := factory.Core().V1().Pods().Informer()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.HasSynced) {
		return fmt.Errorf("pod informer never synced")
	}
	log.Printf("node %s ready: pods on %s (bridge %s)", cfg.nodeName, cfg.podCIDR, cfg.bridge)

	// Pods start in parallel (a Deployment's replicas appear together); one
	// key is never handled by two workers at once (the queue's guarantee).
	for i := 0; i < 4; i++ {
		go func() {
			for {
				key, shutdown := queue.Get()
				if shutdown {
					return
				}
				err := agent.sync(ctx, podInformer.GetIndexer(), key)
				if err != nil && ctx.Err() == nil {
					log.Printf("pod %s: %v (retrying)", key, err)
					queue.AddRateLimited(key)
				} else {
					queue.Forget(key)
				}
				queue.Done(key)
			}
		}()
	}
	<-ctx.Done()
	log.Printf("stopping: every pod's process and namespace goes")
	queue.ShutDown()
	agent.stopAll()
	return nil
}

// registerNode creates (or takes over) the Node and reports it Ready, with
// the bridge's address as its InternalIP and capacity enough for any test.
func registerNode(ctx context.Context, client kubernetes.Interface, cfg config, net *network) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: cfg.nodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": cfg.nodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"portcullis.dev/node":    "test-node-agent",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: cfg.podCIDR, PodCIDRs: []string{cfg.podCIDR}},
	}
	_, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %v", err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	for {
		current, err := client.CoreV1().Nodes().Get(ctx, cfg.nodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node: %v", err)
		}
		current.Status.Capacity = capacity
		current.Status.Allocatable = capacity
		// No Hostname address: the node name resolves nowhere, and the API
		// server dials the first of Hostname, InternalDNS, InternalIP it finds
		// for pods/log.
		current.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: net.gateway.String()},
		}
		current.Status.Conditions = nodeConditions()
		// Where the API server asks for pods/log (see logs.go).
		current.Status.DaemonEndpoints.KubeletEndpoint.Port = kubeletPort
		current.Status.NodeInfo = corev1.NodeSystemInfo{
			KubeletVersion:          "portcullis-test-nodeagent",
			ContainerRuntimeVersion: "nodeagent://processes",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
		}
		_, err = client.CoreV1().Nodes().UpdateStatus(ctx, current, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("report node status: %v", err)
		}
		break
	}
	return removeNotReadyTaint(ctx, client, cfg.nodeName)
}

// removeNotReadyTaint takes off the node.kubernetes.io/not-ready taint the
// API server's TaintNodesByCondition admission puts on every new Node. In a
// cluster the node-lifecycle controller removes it once the Node is Ready;
// the rig does not run that controller (it would also evict pods whenever a
// heartbeat is late), so the agent does it, or nothing is ever scheduled here.
func removeNotReadyTaint(ctx context.Context, client kubernetes.Interface, name string) error {
	for {
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node: %v", err)
		}
		var kept []corev1.Taint
		for _, taint := range node.Spec.Taints {
			if taint.Key != corev1.TaintNodeNotReady && taint.Key != corev1.TaintNodeUnreachable {
				kept = append(kept, taint)
			}
		}
		if len(kept) == len(node.Spec.Taints) {
			return nil
		}
		node.Spec.Taints = kept
		_, err = client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("remove the not-ready taint: %v", err)
		}
		return nil
	}
}

func nodeConditions() []corev1.NodeCondition {
	now := metav1.Now()
	condition := func(t corev1.NodeConditionType, status corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: status, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return []corev1.NodeCondition{
		condition(corev1.NodeReady, corev1.ConditionTrue, "NodeAgentReady"),
		condition(corev1.NodeMemoryPressure, corev1.ConditionFalse, "NodeAgentHasNoPressure"),
		condition(corev1.NodeDiskPressure, corev1.ConditionFalse, "NodeAgentHasNoPressure"),
		condition(corev1.NodePIDPressure, corev1.ConditionFalse, "NodeAgentHasNoPressure"),
		condition(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "NodeAgentBridgeUp"),
	}
}

func heartbeat(ctx context.Context, client kubernetes.Interface, name string) {
	ticker := time.NewTicker(heartbeatInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		node.Status.Conditions = nodeConditions()
		if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
			log.Printf("node heartbeat: %v", err)
		}
	}
}
