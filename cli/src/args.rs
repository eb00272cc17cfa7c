//! The command line, as clap parses it. Nothing here does any work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// tele: one offline tarball for a Kubernetes application, installed anywhere.
///
/// Vendors run `tele build app.yaml` to pack the app, every image it needs
/// (each layer stored once) and its resources into one tarball; admins copy it
/// to machines without internet and run `./install` from it.
#[derive(Debug, Parser)]
#[command(name = "tele", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (each image as it resolves).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// `text` for people; `json` prints one JSON document on stdout for CI.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output_format: OutputFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text, progress bars on a terminal.
    Text,
    /// One JSON document on stdout; progress and errors on stderr.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the bundle tarball of an app.
    Build(BuildArgs),
    /// List the images an app needs and where each is named, without fetching.
    Images(ImagesArgs),
    /// Show what a bundle holds, reading the tarball without extracting it.
    Inspect(BundleArg),
    /// Check every file and blob of a bundle (tarball or extracted directory),
    /// and with --key its signature.
    Verify(VerifyArgs),
    /// Make a key pair that signs bundles (`tele build --sign-key`).
    Keygen(KeygenArgs),
    /// Work with container images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Install an extracted bundle on this machine (what the bundle's ./install does).
    Install(InstallBundleArgs),
    /// Join this machine to a cluster as a master or a worker: from an
    /// extracted bundle (--bundle), or with this binary alone, fetching what
    /// the node runs from the master and checking it against the bundle's digests.
    Join(JoinBundleArgs),
    /// Join tokens: make, list and revoke the tokens that let nodes join.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Keep the routes of the pod network between nodes (started by the installer).
    #[command(hide = true)]
    PodNetwork(StateDirArg),
    /// Provision the node's volumes for claims of the default StorageClass (started by the installer).
    #[command(hide = true)]
    LocalVolumes(StateDirArg),
    /// Answer the cluster's DNS for the node's pods (started by the installer).
    #[command(hide = true)]
    ClusterDns(ClusterDnsArgs),
    /// Run a master's join service (started by the installer).
    #[command(hide = true)]
    JoinServer(JoinServerArgs),
    /// Run the node's local API endpoint (started by the installer).
    #[command(hide = true)]
    ApiProxy(ApiProxyArgs),
    /// Show the saved install plan: the tree of phases, each one's state and duration.
    Plan(StateDirArg),
    /// Show the node's services, the node and the app.
    Status(StateDirArg),
    /// Stop and remove everything an install created on this machine.
    Uninstall(UninstallArgs),
    /// On a joined node: leave the cluster (a master drains it, a master
    /// leaves etcd when it keeps its quorum, this machine is cleaned, the
    /// master deletes its Node and frees its pod subnet).
    Leave(UninstallArgs),
    /// On a master: drain a node, ask its machine to uninstall itself, take it
    /// out of etcd (a master, only when etcd keeps its quorum), delete it and
    /// free its pod subnet.
    Remove(RemoveArgs),
    /// Manage an installed cluster's resources (where alerts go).
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// The node's certificates: when each expires, and renewing them now.
    /// Each node renews its own at two thirds of their life by itself.
    #[command(subcommand)]
    Certificates(CertificatesCommand),
    /// Run the node agent that supervises the services (started by the installer).
    #[command(hide = true)]
    Agent(StateDirArg),
    /// Run the node health checker until SIGTERM (a service of every node).
    #[command(hide = true)]
    HealthCheck(StateDirArg),
    /// Serve an OCI image layout read-only as a registry (the node's image mirror).
    #[command(subcommand)]
    Registry(RegistryCommand),
}

/// The state directory of an install.
#[derive(Debug, Args)]
pub struct StateDirArg {
    /// Where the install keeps its state.
    #[arg(long, default_value = "/var/lib/tele", env = "TELE_STATE_DIR")]
    pub state_dir: PathBuf,
}

/// `tele uninstall`
#[derive(Debug, Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// Do not ask for confirmation. Without it, tele asks on a terminal and
    /// refuses when standard input is not one.
    #[arg(short, long)]
    pub yes: bool,
    /// On AWS or Azure, first remove the machines `./install --provision`
    /// made (those it recorded, and nothing else).
    #[arg(long)]
    pub deprovision: bool,
    #[command(flatten)]
    pub aws_keys: AwsKeysArgs,
}

/// The AWS keys that make (and remove) the machines of `--provision`.
#[derive(Debug, Args)]
pub struct AwsKeysArgs {
    /// On AWS, with --provision (or uninstall's --deprovision), the keys
    /// that make and remove the machines: a credentials file in the AWS
    /// shared credentials format (read, never copied) [default: the AWS
    /// SDKs' chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the shared
    /// credentials file, then the instance profile].
    #[arg(long, value_name = "FILE")]
    pub aws_credentials_file: Option<PathBuf>,
    /// The profile of --aws-credentials-file.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "default",
        requires = "aws_credentials_file"
    )]
    pub aws_profile: String,
}

impl AwsKeysArgs {
    /// Makes the keys of the file, when one is given, the ones this
    /// process's AWS calls use (before the SDKs' chain).
    pub fn give(&self) -> anyhow::Result<()> {
        let Some(file) = &self.aws_credentials_file else {
            return Ok(());
        };
        let bad = |message: String| {
            tele_installer::error::InstallError::bad_input(
                message,
                "give a file like ~/.aws/credentials: [PROFILE] with aws_access_key_id and aws_secret_access_key",
            )
        };
        let credentials = tele_installer::cloud::api::Credentials::read_file(file, &self.aws_profile)
            .map_err(|e| bad(format!("--aws-credentials-file: {e}")))?
            .ok_or_else(|| {
                bad(format!(
                    "--aws-credentials-file {}: no profile `{}` with aws_access_key_id and aws_secret_access_key",
                    file.display(),
                    self.aws_profile
                ))
            })?;
        tele_installer::cloud::api::give(credentials);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The node's name.
    pub node: String,
    #[command(flatten)]
    pub state: StateDirArg,
}

/// `tele join ADDR --token TOKEN [--bundle DIR] ...`
#[derive(Debug, Args)]
pub struct JoinBundleArgs {
    /// The extracted bundle directory. Without it, the node fetches the
    /// app manifest, the runtime and the images from the master (over TLS
    /// with the pinned cluster CA and a client certificate the token gets),
    /// verifies every byte against the bundle's digests, and keeps them in
    /// the state directory. This tele must be the bundle's version.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    pub join: crate::cmd::install::JoinArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a join token and print the command that joins a node with it.
    Create(TokenCreateArgs),
    /// List the join tokens: id, role, state, expiry, the nodes that used them.
    List(StateDirArg),
    /// Revoke a join token: no node can join with it any more.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// How long the token works: 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_ttl)]
    pub ttl: std::time::Duration,
    /// The node profile joining nodes take [default: any worker profile].
    #[arg(long)]
    pub role: Option<String>,
    #[command(flatten)]
    pub state: StateDirArg,
}

fn parse_ttl(s: &str) -> Result<std::time::Duration, String> {
    tele_installer::token::parse_ttl(s)
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id (the part before the first dot).
    pub id: String,
    #[command(flatten)]
    pub state: StateDirArg,
}

#[derive(Debug, Args)]
pub struct ApiProxyArgs {
    /// Where to listen (127.0.0.1 and the node's local API port).
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    /// This master's own API server, tried first.
    #[arg(long)]
    pub prefer: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub state: StateDirArg,
}

/// `tele cluster-dns`
#[derive(Debug, Args)]
pub struct ClusterDnsArgs {
    /// Where to answer, UDP and TCP (the node's address and port 53).
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub state: StateDirArg,
}

#[derive(Debug, Args)]
pub struct JoinServerArgs {
    /// Where to listen (the master's address and join port).
    #[arg(long)]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub state: StateDirArg,
}

#[derive(Debug, Subcommand)]
pub enum CertificatesCommand {
    /// List the node's certificates and kubeconfigs, soonest expiry first.
    List(StateDirArg),
    /// Renew every certificate and kubeconfig of this node now and restart,
    /// one at a time, the services that use them (pods keep running).
    Renew(CertificatesRenewArgs),
}

/// `tele certificates renew`
#[derive(Debug, Args)]
pub struct CertificatesRenewArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// On a master: how long the certificates it issues are valid from now
    /// on (`365d`, `12h`, `30m`), this renewal's included; workers renewing
    /// through it get the same.
    #[arg(long, value_name = "DURATION", value_parser = parse_short_validity)]
    pub validity: Option<std::time::Duration>,
}

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Add or replace `kind: smtp` / `kind: alerttarget` resources and apply them.
    Create(ResourceCreateArgs),
}

#[derive(Debug, Args)]
pub struct ResourceCreateArgs {
    /// A YAML file of resources.
    pub file: PathBuf,
    #[command(flatten)]
    pub state: StateDirArg,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve the layout until SIGTERM.
    Serve(RegistryServeArgs),
}

#[derive(Debug, Args)]
pub struct RegistryServeArgs {
    /// The OCI image layout (a bundle's images/ directory).
    #[arg(long)]
    pub layout: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5043")]
    pub listen: std::net::SocketAddr,
    /// TLS certificate chain (PEM); without it, plain HTTP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by this CA (PEM); with TLS only.
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Connections served at once; more are closed as they come.
    #[arg(long, default_value_t = tele_installer::registry_server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

/// `tele install BUNDLE_DIR ...`
#[derive(Debug, Args)]
pub struct InstallBundleArgs {
    /// The extracted bundle directory.
    pub bundle: PathBuf,
    #[command(flatten)]
    pub install: InstallArgs,
}

/// How to install.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Where the install keeps everything it writes.
    #[arg(long, default_value = "/var/lib/tele", env = "TELE_STATE_DIR")]
    pub state_dir: PathBuf,
    /// This node's address [default: the address of the default route's interface].
    #[arg(long)]
    pub advertise_addr: Option<std::net::IpAddr>,
    /// This node's name [default: the cloud's name for the machine on AWS
    /// (its private DNS name) and Azure (its computer name), else the
    /// hostname].
    #[arg(long)]
    pub node_name: Option<String>,
    /// Where the node runs: aws, azure or onprem [default: found out from
    /// the clouds' instance metadata services, onprem when neither answers
    /// within about a second].
    #[arg(long, value_name = "PROVIDER")]
    pub cloud_provider: Option<tele_installer::cloud::Provider>,
    /// On a cloud, the cluster's name: the cloud's resources it may use
    /// (subnets, security groups) and those it makes (load balancers) carry
    /// the tag kubernetes.io/cluster/NAME [default: the app's name].
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// On Azure, the service principal's application (client) id; its
    /// secret is read from AZURE_CLIENT_SECRET [default: the VM's managed
    /// identity].
    #[arg(long, value_name = "ID", requires = "azure_tenant_id")]
    pub azure_client_id: Option<String>,
    /// On Azure, the service principal's tenant (directory) id.
    #[arg(long, value_name = "ID", requires = "azure_client_id")]
    pub azure_tenant_id: Option<String>,
    /// On Azure Stack (or a sovereign cloud), its endpoints: a JSON file in
    /// the form of Azure's Go SDK (AZURE_ENVIRONMENT_FILEPATH), with
    /// resourceManagerEndpoint, activeDirectoryEndpoint and
    /// serviceManagementEndpoint [default: Azure's public cloud].
    #[arg(long, value_name = "FILE")]
    pub azure_environment: Option<PathBuf>,
    /// On AWS or Azure, make the flavor's other machines from this one: EC2
    /// instances or VMs in this machine's subnet, with its security groups
    /// and image, each joining the cluster when it starts. `tele uninstall
    /// --deprovision` removes them.
    #[arg(long)]
    pub provision: bool,
    /// With --provision, a profile's instance type or VM size [default on
    /// AWS: the profile's providers.aws.instanceTypes]; repeat for each
    /// profile.
    #[arg(long, value_name = "PROFILE=TYPE", requires = "provision")]
    pub instance_type: Vec<String>,
    #[command(flatten)]
    pub aws_keys: AwsKeysArgs,
    /// With --provision, the subnet of the machines [default: this
    /// instance's].
    #[arg(long, value_name = "ID", requires = "provision")]
    pub subnet_id: Option<String>,
    /// With --provision, a security group of the machines; repeat for each
    /// [default: this instance's].
    #[arg(long, value_name = "ID", requires = "provision")]
    pub security_group_id: Vec<String>,
    /// With --provision, the machines' image [default: this instance's].
    #[arg(long, value_name = "ID", requires = "provision")]
    pub image_id: Option<String>,
    /// The pod network [default: 10.244.0.0/16].
    #[arg(long)]
    pub pod_network_cidr: Option<String>,
    /// The service network [default: 10.100.0.0/16].
    #[arg(long)]
    pub service_cidr: Option<String>,
    /// A cgroup for this node's pods (needed when several nodes share a machine).
    #[arg(long)]
    pub cgroup_root: Option<String>,
    /// Where the node keeps the data of its volumes (claims of the default
    /// StorageClass), one directory per claim [default: STATE_DIR/volumes].
    #[arg(long)]
    pub volumes_dir: Option<PathBuf>,
    /// Rotate a service's log (STATE_DIR/logs/NAME.log) when it grows past
    /// this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub log_max_size: u64,
    /// Rotated files kept per service log.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub log_max_files: u32,
    /// How long the cluster's certificates and kubeconfigs are valid
    /// (`365d`, `30d`, `12h`; at least 1h): each node renews its own at two
    /// thirds of it and restarts what uses them [default: 365d].
    #[arg(long, value_name = "DURATION", value_parser = parse_validity)]
    pub cert_validity: Option<std::time::Duration>,
    /// How long the cluster's CA certificates are valid (at least 6m):
    /// each master remakes them from their keys, with the same life, at
    /// two thirds of it, and hands them to the nodes with their renewed
    /// certificates [default: 3650d].
    #[arg(long, value_name = "DURATION", value_parser = parse_ca_validity)]
    pub ca_validity: Option<std::time::Duration>,
    /// The node profile from the manifest [default: the flavor's first, else the first].
    #[arg(long, visible_alias = "role")]
    pub profile: Option<String>,
    /// The manifest's flavor: how many nodes of each profile the cluster
    /// should have (`tele status` shows the cluster against it) [default:
    /// the manifest's default flavor].
    #[arg(long)]
    pub flavor: Option<String>,
    /// Skip one preflight check by name. Repeatable.
    #[arg(long = "skip-check", value_name = "NAME")]
    pub skip_checks: Vec<String>,
    /// Load the kernel modules and set the sysctls that the checks need.
    #[arg(long)]
    pub autofix: bool,
    /// Continue a failed or interrupted install from where it stopped, with
    /// the settings it started with.
    #[arg(long, conflicts_with = "uninstall")]
    pub resume: bool,
    /// Install from a browser: serve the install wizard over HTTPS on this
    /// node's address (its certificate comes from the cluster's CA, made
    /// first) and print its address, with a one-time token, and the
    /// certificate's fingerprint. The page asks for the deployment's name,
    /// where it runs and the flavor, then shows the install as it runs.
    #[arg(long, conflicts_with_all = ["uninstall", "resume"])]
    pub wizard: bool,
    /// The wizard's port.
    #[arg(
        long,
        default_value_t = 61009,
        requires = "wizard",
        value_name = "PORT"
    )]
    pub wizard_port: u16,
    /// Remove the install instead.
    #[arg(long)]
    pub uninstall: bool,
    /// With --uninstall: do not ask for confirmation (needed when standard
    /// input is not a terminal).
    #[arg(short, long, requires = "uninstall")]
    pub yes: bool,
    /// Seconds to wait for the app, and for each hook [default: 600].
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Port of the node's image registry [default: 5043].
    #[arg(long)]
    pub registry_port: Option<u16>,
    /// Where `tele` and `kubectl` are linked for the admin (links the
    /// uninstall removes); `none` for no links.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/usr/local/bin",
        env = "TELE_BIN_DIR"
    )]
    pub bin_dir: PathBuf,
    /// Where alerts go: a YAML file of `kind: smtp` and `kind: alerttarget`
    /// resources (docs/monitoring.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The vendor's public key (PEM): install only a bundle signed by it;
    /// nothing changes otherwise [default: the key built into this
    /// installer, if it has one].
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Refuse a bundle that is not signed (by --key, or the built-in key).
    #[arg(long)]
    pub signed_only: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The app manifest (Gravity v2 format).
    #[arg(default_value = "app.yaml")]
    pub manifest: PathBuf,
    /// Where to write the tarball [default: ./NAME-VERSION.tar].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Blob cache shared by all builds [default: $XDG_CACHE_HOME/tele or ~/.cache/tele].
    #[arg(long, env = "TELE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A local image source consulted before registries: oci:PATH (an OCI
    /// image layout) or docker-archive:PATH (a `docker save` tar). Repeatable.
    #[arg(long = "image-source", value_name = "KIND:PATH")]
    pub image_sources: Vec<String>,
    /// A registry reached over plain HTTP (loopback registries always are). Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Platform to take from multi-platform images.
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH[/VARIANT]")]
    pub platform: String,
    /// Parallel downloads.
    #[arg(short, long, default_value_t = 8)]
    pub jobs: usize,
    /// Outer compression. Layers are already compressed, so `none` is usually best.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    pub compression: CompressionArg,
    /// The binary to pack as the bundle's `install` [default: this tele].
    #[arg(long, value_name = "PATH")]
    pub installer: Option<PathBuf>,
    #[command(flatten)]
    pub parts: SystemParts,
    /// How the runtime's files are stored: `zstd` (about a quarter of their
    /// size; unpacked and checked at install; compressed once per runtime and
    /// kept in the cache) or `none` (as they are).
    #[arg(long, value_enum, default_value_t = RuntimeCompressionArg::Zstd)]
    pub runtime_compression: RuntimeCompressionArg,
    /// Sign the bundle with this private key (`tele keygen` makes one): the
    /// signature covers bundle.json, so every file and blob.
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
}

/// `tele verify BUNDLE [--key PUB]`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle tarball or its extracted directory.
    pub bundle: PathBuf,
    /// The vendor's public key (PEM): the bundle must be signed by it.
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
}

/// `tele keygen [--output NAME]`
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Writes NAME.key (the private key, 0600: keep it secret, it signs
    /// bundles) and NAME.pub (the public key, for admins: `--key NAME.pub`).
    #[arg(short, long, value_name = "NAME", default_value = "tele-signing")]
    pub output: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// A plain tar.
    None,
    /// zstd (level 3).
    Zstd,
    /// gzip (level 6).
    Gzip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuntimeCompressionArg {
    /// Each file compressed with zstd (FILE.zst).
    Zstd,
    /// Each file as it is.
    None,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// The app manifest (or the directory holding app.yaml).
    #[arg(default_value = "app.yaml")]
    pub manifest: PathBuf,
    /// Blob cache, where the default runtime is found [default: $XDG_CACHE_HOME/tele or ~/.cache/tele].
    #[arg(long, env = "TELE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub parts: SystemParts,
}

/// What a bundle holds beside the app: the Kubernetes runtime and the
/// monitoring stack (`tele build` packs them, `tele images` lists their images).
#[derive(Debug, Args)]
pub struct SystemParts {
    /// The Kubernetes runtime (a directory or tarball with runtime.json)
    /// [default: the manifest's systemOptions.runtime, else the newest in CACHE_DIR/runtime].
    #[arg(long, value_name = "PATH", conflicts_with = "no_runtime")]
    pub runtime: Option<PathBuf>,
    /// No Kubernetes: an app-only bundle for an existing cluster.
    #[arg(long, env = "TELE_NO_RUNTIME")]
    pub no_runtime: bool,
    /// No monitoring stack (the manifest can also disable it:
    /// extensions.monitoring.disabled).
    #[arg(long, env = "TELE_NO_MONITORING")]
    pub no_monitoring: bool,
}

impl SystemParts {
    /// The runtime chosen.
    pub fn runtime_choice(&self) -> tele_bundler::build::RuntimeChoice {
        use tele_bundler::build::RuntimeChoice;
        match (&self.runtime, self.no_runtime) {
            (_, true) => RuntimeChoice::None,
            (Some(p), _) => RuntimeChoice::Path(p.clone()),
            (None, false) => RuntimeChoice::Default,
        }
    }
}

#[derive(Debug, Args)]
pub struct BundleArg {
    /// The bundle tarball (or, for verify, its extracted directory).
    pub bundle: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make a one-layer OCI image from a directory, deterministically.
    Build(ImageBuildArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// The directory whose files become the image's layer (its root is `/`).
    pub dir: PathBuf,
    /// The image's reference, e.g. example.com/hello:1.0.
    #[arg(long = "ref", value_name = "REF")]
    pub reference: String,
    /// The OCI image layout to add the image to (created if missing).
    #[arg(short, long, value_name = "LAYOUT")]
    pub output: PathBuf,
    /// A base image in the same layout whose layers come first (shared, not copied).
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// The image's entrypoint (repeat for each argument).
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Vec<String>,
    /// The image's command (repeat for each argument: --cmd httpd --cmd -f).
    #[arg(long, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// An environment variable KEY=VALUE. Repeatable.
    #[arg(long)]
    pub env: Vec<String>,
    /// Platform recorded in the image config.
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
}

/// A certificate validity at install: at least an hour, so that the
/// install itself (during which nothing is renewed) ends well within it.
fn parse_validity(text: &str) -> Result<std::time::Duration, String> {
    validity_at_least(text, 3600, "1h")
}

/// A CA certificate's validity at install: at least six minutes, so that
/// an install ends, and the CA's renewal at two thirds of it has its
/// restarts done, before it expires.
fn parse_ca_validity(text: &str) -> Result<std::time::Duration, String> {
    validity_at_least(text, 360, "6m")
}

/// A certificate validity for `tele certificates renew`: at least three
/// minutes, so that a renewal and the restarts it causes fit in the last
/// third of it.
fn parse_short_validity(text: &str) -> Result<std::time::Duration, String> {
    validity_at_least(text, 180, "3m")
}

/// A certificate validity: a number and a unit (`d`, `h`, `m` or `s`), at
/// least `min_secs` and at most ten years (the CA's own validity).
fn validity_at_least(text: &str, min_secs: u64, min: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_secs: u64 = match unit {
        "d" => 86_400,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => return Err("give a number and a unit: d, h, m or s (e.g. 365d)".into()),
    };
    let secs = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs))
        .ok_or("give a number and a unit: d, h, m or s (e.g. 365d)")?;
    if !(min_secs..=3650 * 86_400).contains(&secs) {
        return Err(format!("must be at least {min} and at most 3650d"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod validity_tests {
    #[test]
    fn validities_take_a_unit_and_stay_in_bounds() {
        use std::time::Duration;
        assert_eq!(
            super::parse_validity("365d"),
            Ok(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(super::parse_validity("2h"), Ok(Duration::from_secs(7200)));
        assert!(super::parse_validity("30m").is_err());
        assert_eq!(super::parse_ca_validity("6m"), Ok(Duration::from_secs(360)));
        assert!(super::parse_ca_validity("5m").is_err());
        assert_eq!(
            super::parse_short_validity("3m"),
            Ok(Duration::from_secs(180))
        );
        assert_eq!(
            super::parse_short_validity("200s"),
            Ok(Duration::from_secs(200))
        );
        for bad in [
            "",
            "d",
            "10",
            "5x",
            "-3d",
            "179s",
            "2m",
            "3651d",
            "99999999999999999999d",
        ] {
            assert!(super::parse_short_validity(bad).is_err(), "{bad}");
        }
    }
}
