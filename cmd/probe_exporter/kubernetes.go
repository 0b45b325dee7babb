package main

import (
	"context"

	"github.com/alecthomas/kingpin/v2"

	"github.com/probe-exporter/probe_exporter/collector"
	"github.com/probe-exporter/probe_exporter/internal/kubepods"
)

// kubeFlags configure the kubernetes decoder's names.
type kubeFlags struct {
	nodeName  string
	apiServer string
	saDir     string
}

func registerKubernetesFlags(app *kingpin.Application, f *kubeFlags) {
	app.Flag("kubernetes.node-name", "This node's name (the DaemonSet sets NODE_NAME from spec.nodeName): the kubernetes decoder names the pods of this node, listed and watched from the API server.").
		Envar("NODE_NAME").StringVar(&f.nodeName)
	app.Flag("kubernetes.api-server", "URL of the Kubernetes API server for pod names (default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, as in a pod).").
		StringVar(&f.apiServer)
	app.Flag("kubernetes.service-account-dir", "Directory with the service account's token and ca.crt used with the API server.").
		Default(kubepods.DefaultServiceAccountDir).StringVar(&f.saDir)
}

// startKubernetes gives the kubernetes decoder a resolver that asks the
// API server for names once a config uses it, until ctx ends.
func (d *daemon) startKubernetes(ctx context.Context) {
	api := d.f.kube.apiServer
	if api == "" {
		api = kubepods.InClusterAPIServer()
	}
	r := kubepods.New(ctx, kubepods.Options{
		APIServer:         api,
		ServiceAccountDir: d.f.kube.saDir,
		NodeName:          d.f.kube.nodeName,
		MetricsNamespace:  collector.Namespace,
		Logger:            d.logger,
	})
	d.env.Pods = r
	d.reg.MustRegister(r)
}
