package main

import (
	"context"
	"log/slog"

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

// kubeNames is the kubernetes decoder's resolver as a component: it asks
// the API server for names once a config uses it, until the daemon's ctx
// ends, and exports its metrics.
type kubeNames struct {
	*kubepods.Resolver
}

// Run waits for ctx: the resolver's requests live on the daemon's ctx.
func (k kubeNames) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func newKubeNames(ctx context.Context, f kubeFlags, logger *slog.Logger) kubeNames {
	api := f.apiServer
	if api == "" {
		api = kubepods.InClusterAPIServer()
	}
	return kubeNames{kubepods.New(ctx, kubepods.Options{
		APIServer:         api,
		ServiceAccountDir: f.saDir,
		NodeName:          f.nodeName,
		MetricsNamespace:  collector.Namespace,
		Logger:            logger,
	})}
}
