package local.greeter.metrics;

import io.prometheus.client.CollectorRegistry;
import io.prometheus.client.exporter.HTTPServer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.util.Properties;
import org.apache.flink.metrics.prometheus.AbstractPrometheusReporter;
import org.apache.flink.metrics.reporter.MetricReporter;
import org.apache.flink.metrics.reporter.MetricReporterFactory;

/**
 * Flink 1.16's Prometheus reporter, served on one address instead of every interface.
 *
 * <p>Flink's own {@code PrometheusReporter} binds its HTTP server to the wildcard address and has no setting for
 * the host (1.16.2). The local stack binds every server to loopback, so its JVMs use this factory instead: the
 * same metrics, names and labels (it is the same {@link AbstractPrometheusReporter}), the same {@code port}
 * setting, plus {@code host}. Loaded as a Flink plugin beside {@code flink-metrics-prometheus-1.16.2.jar}.
 */
public final class LoopbackPrometheusReporterFactory implements MetricReporterFactory {
    static final String ARG_HOST = "host";
    static final String ARG_PORT = "port";

    @Override
    public MetricReporter createMetricReporter(Properties properties) {
        String host = properties.getProperty(ARG_HOST, "127.0.0.1");
        int port = Integer.parseInt(properties.getProperty(ARG_PORT, "9249").trim());
        return new Reporter(new InetSocketAddress(host, port));
    }

    /** The abstract reporter's collectors, served by the Prometheus client's HTTP server on one address. */
    static final class Reporter extends AbstractPrometheusReporter {
        private final HTTPServer server;

        Reporter(InetSocketAddress address) {
            try {
                // The abstract reporter registers its collectors in the default registry; a daemon thread pool.
                server = new HTTPServer(address, CollectorRegistry.defaultRegistry, true);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot serve Prometheus metrics on " + address, e);
            }
            log.info("Serving Prometheus metrics on {}:{}.", address.getHostString(), server.getPort());
        }

        @Override
        public void close() {
            server.stop();
            super.close();
        }
    }
}
