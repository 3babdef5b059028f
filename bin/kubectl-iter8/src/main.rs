//! `kubectl-iter8`: `kubectl iter8 get [RELEASE]` and `kubectl iter8 explain RELEASE`, a thin
//! binary over the crate's library (see `lib.rs`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kubectl_iter8::cluster::{self, Connection, KubeOptions, Watches};
use kubectl_iter8::error::{CliError, exit};
use kubectl_iter8::model::{self, ReleaseView, Selection, Snapshot};
use kubectl_iter8::text::{self, Style};
use routemap_index::config::Config;
use routing_core::Request;

const EXIT_CODES: &str = "Exit codes:
  0  shown (every routemap valid)
  1  no such release, or a routemap shown is invalid
  2  bad command line, kubeconfig or context
  3  forbidden: the API server refused a read (the verb and resource are named)
  4  the API server cannot be reached
  5  the Gateway API HTTPRoute CRD is not installed

Read-only: list/watch configmaps, events, httproutes and the version resource types
(services, deployments, ...): docs/kubectl-rbac.yaml is a ClusterRole to grant.";

/// Iter8 releases as the controller sees them: versions, readiness, route and decisions.
#[derive(Debug, Parser)]
#[command(name = "kubectl-iter8", bin_name = "kubectl iter8", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    kube: Kube,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Kube {
    /// Namespace (default: the context's, else `default`).
    #[arg(long, short = 'n', global = true)]
    namespace: Option<String>,
    /// All namespaces.
    #[arg(long, short = 'A', global = true, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Kubeconfig context (default: the current context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The controller's config file (its resource types); the chart's defaults otherwise.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "controller_config"
    )]
    config: Option<PathBuf>,
    /// Read the controller's config from its ConfigMap (key config.yaml).
    #[arg(long, global = true, value_name = "NAMESPACE/NAME")]
    controller_config: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show each release: route and gateway answers, versions, where requests go, Events.
    Get {
        /// Release (`httpbin` shows routemap `httpbin-routemap`); all releases when absent.
        release: Option<String>,
        /// Output format (default: a tree).
        #[arg(long, short, value_enum)]
        output: Option<Output>,
        /// Redraw on every change (from watches); Ctrl-C to stop.
        #[arg(long, short)]
        watch: bool,
    },
    /// Which version serves a request now, and why.
    Explain {
        /// Release.
        release: String,
        /// Request header NAME=VALUE (repeatable).
        #[arg(long = "header", short = 'H', value_name = "NAME=VALUE", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// Request path (with an optional ?query).
        #[arg(long, default_value = "/")]
        path: String,
        /// Request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// Output format (default: text).
        #[arg(long, short, value_enum)]
        output: Option<Output>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Json,
    Yaml,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<u8, CliError> {
    let conn = cluster::connect(&KubeOptions {
        kubeconfig: cli.kube.kubeconfig.clone(),
        context: cli.kube.context.clone(),
        namespace: cli.kube.namespace.clone(),
        all_namespaces: cli.kube.all_namespaces,
    })
    .await?;
    let config = match (&cli.kube.config, &cli.kube.controller_config) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?;
            Config::from_yaml(&text).map_err(|e| CliError::Config(e.to_string()))?
        }
        (None, Some(reference)) => cluster::controller_config(&conn, reference).await?,
        (None, None) => Config::default(),
    };
    let selection = |release: Option<&String>| Selection {
        namespace: conn.namespace.clone(),
        release: release.cloned(),
    };
    match &cli.command {
        Command::Get {
            release,
            output,
            watch,
        } => {
            get(
                &conn,
                &config,
                &selection(release.as_ref()),
                *output,
                *watch,
            )
            .await
        }
        Command::Explain {
            release,
            headers,
            path,
            method,
            output,
        } => {
            let sources = cluster::sources(&config);
            let listed = cluster::list(&conn, &sources).await?;
            let req = Request {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                headers: headers.clone(),
            };
            let sel = selection(Some(release));
            let view =
                model::explain_view(&config, &listed.snapshot, &sel, &req).ok_or_else(|| {
                    CliError::NotFound {
                        release: release.clone(),
                        scope: conn.scope(),
                    }
                })?;
            let text = match output {
                Some(o) => serialize(&view, o),
                None => text::render_explain(&view, style()),
            };
            print(&text);
            Ok(if view.release.invalid.is_some() {
                exit::NOT_FOUND_OR_INVALID
            } else {
                exit::OK
            })
        }
    }
}

fn style() -> Style {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        Style::tty()
    } else {
        Style::plain()
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn serialize<T: serde::Serialize>(value: &T, output: &Output) -> String {
    match output {
        Output::Json => serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
        Output::Yaml => serde_saphyr::to_string(value).unwrap_or_default(),
    }
}

/// The text (or JSON/YAML) of the views; the exit code they call for.
fn frame(
    views: &[ReleaseView],
    output: Option<Output>,
    scope: &str,
    now: Timestamp,
) -> (String, u8) {
    let text = match output {
        Some(o) => serialize(&serde_json::json!({"releases": views}), &o),
        None => text::render(views, now, style(), scope),
    };
    let code = if views.iter().any(|v| v.invalid.is_some()) {
        exit::NOT_FOUND_OR_INVALID
    } else {
        exit::OK
    };
    (text, code)
}

async fn get(
    conn: &Connection,
    config: &Config,
    selection: &Selection,
    output: Option<Output>,
    watch: bool,
) -> Result<u8, CliError> {
    let sources = cluster::sources(config);
    let listed = cluster::list(conn, &sources).await?;
    let views = model::views(config, &listed.snapshot, selection);
    let not_found = || CliError::NotFound {
        release: selection.release.clone().unwrap_or_default(),
        scope: conn.scope(),
    };
    if views.is_empty() && selection.release.is_some() {
        return Err(not_found());
    }
    let (text, code) = frame(&views, output, &conn.scope(), Timestamp::now());
    if !watch {
        print(&text);
        return Ok(code);
    }
    watch_loop(conn, config, selection, output, &listed.served, text).await
}

async fn watch_loop(
    conn: &Connection,
    config: &Config,
    selection: &Selection,
    output: Option<Output>,
    served: &[cluster::Source],
    first: String,
) -> Result<u8, CliError> {
    let tty = style().tty;
    let redraw = |text: &str| {
        if tty {
            // Home and clear, then the new frame: the tree stays in place.
            print(&format!("\x1b[H\x1b[2J{text}"));
        } else {
            print(&format!("{text}\n"));
        }
    };
    redraw(&first);
    let mut last = first;
    let mut watches = Watches::start(conn, served);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(exit::OK),
            change = watches.next() => {
                let Some(change) = change else { return Ok(exit::OK) };
                if let Err(e) = change {
                    eprintln!("watch: {e} (retrying)");
                }
                if !watches.synced() {
                    continue;
                }
                let snapshot: Snapshot = watches.snapshot();
                let views = model::views(config, &snapshot, selection);
                let (text, _) = frame(&views, output, &conn.scope(), Timestamp::now());
                if text != last {
                    redraw(&text);
                    last = text;
                }
            }
        }
    }
}
