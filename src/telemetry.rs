//! Logs and traces. Logs go to stderr (stdout belongs to MCP in stdio mode), as text or JSON,
//! filtered by `MCP_WARDEN_LOG`. With the `otel` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans are also exported over OTLP/HTTP:
//! each forwarded request is a `request` span carrying session, agent, method, request id and
//! upstream. `OTEL_EXPORTER_OTLP_PROTOCOL` picks `http/protobuf` (default) or `http/json`;
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` are honoured; `MCP_WARDEN_OTEL_FILTER`
//! chooses what is exported (default `mcp_warden=debug`, which includes the request spans).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes exported spans when dropped (at the end of `main`, outside the async runtime).
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("mcp-warden: flushing traces failed: {e}");
            }
        }
    }
}

fn otlp_endpoint_set() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Installs the global subscriber. Call once, before the runtime starts.
pub fn init(filter: &str, format: &str) -> Guard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal: a log file or a collector gets plain text
    // (and NO_COLOR turns it off, https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let fmt: Boxed = if format == "json" {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    #[cfg(feature = "otel")]
    {
        let mut layers: Vec<Boxed> = vec![fmt];
        let provider = match otlp_endpoint_set().then(otel_layer) {
            Some(Ok((layer, provider))) => {
                layers.push(layer);
                Some(provider)
            }
            Some(Err(e)) => {
                eprintln!("mcp-warden: OpenTelemetry export is off: {e}");
                None
            }
            None => None,
        };
        tracing_subscriber::registry().with(layers).init();
        Guard { provider }
    }
    #[cfg(not(feature = "otel"))]
    {
        tracing_subscriber::registry().with(fmt).init();
        if otlp_endpoint_set() {
            tracing::warn!("OTEL_EXPORTER_OTLP_ENDPOINT is set, but this build has no OpenTelemetry export (build with `--features otel`)");
        }
        Guard {}
    }
}

type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

#[cfg(feature = "otel")]
fn otel_layer() -> Result<(Boxed, opentelemetry_sdk::trace::SdkTracerProvider), String> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Err(_) | Ok("") | Ok("http/protobuf") => opentelemetry_otlp::Protocol::HttpBinary,
        Ok("http/json") => opentelemetry_otlp::Protocol::HttpJson,
        Ok(other) => {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (http/protobuf or http/json)"
            ))
        }
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("mcp-warden");
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("mcp-warden");
    let filter = std::env::var("MCP_WARDEN_OTEL_FILTER")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("mcp_warden=debug"));
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter)
        .boxed();
    Ok((layer, provider))
}
