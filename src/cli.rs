//! Command-line arguments (clap derive). Types only; commands.rs runs them.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// patgate: an authentication gateway for PATs and API keys.
#[derive(Debug, Parser)]
#[command(name = "patgate", version, about, propagate_version = true)]
pub struct Cli {
    /// The conf file (YAML).
    #[arg(
        short = 'c',
        long = "conf",
        global = true,
        default_value = "conf/patgate.yaml"
    )]
    pub conf: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate the conf and reach Redis, then exit.
    Check,
    /// Self-contained demo: private redis-server, echo upstream, gateway, seeded user and token.
    Demo(DemoArgs),
    /// How the gateway would decide a request for a credential, check by check (no secret).
    Explain(ExplainArgs),
    /// Users and memberships.
    User {
        /// The user command.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Personal access tokens.
    Token {
        /// The token command.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Organization API keys.
    Apikey {
        /// The API key command.
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// The audit trail (management actions and denied requests).
    Audit {
        /// The audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// Pingora's own process flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run in the background.
    #[arg(short, long)]
    pub daemon: bool,
    /// Take over the listening sockets of a running instance (graceful upgrade).
    #[arg(short, long)]
    pub upgrade: bool,
    /// Check that the server can start, then exit.
    #[arg(short, long)]
    pub test: bool,
}

/// Demo options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port for the demo gateway (a free one is picked if it is taken).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

/// `patgate explain` arguments.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The credential's 10-character prefix.
    #[arg(long = "token-prefix")]
    pub token_prefix: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request path.
    #[arg(long)]
    pub path: String,
    /// Host the request is sent to.
    #[arg(long)]
    pub host: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `patgate user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create or update a membership (creates the user, active, if new).
    Put {
        /// User id.
        user: String,
        /// Org id.
        #[arg(long)]
        org: String,
        /// Role in that org.
        #[arg(long)]
        role: String,
    },
    /// End a membership.
    Leave {
        /// User id.
        user: String,
        /// Org id.
        #[arg(long)]
        org: String,
    },
    /// Suspend a user: their PATs stop working at once.
    Suspend {
        /// User id.
        user: String,
    },
    /// Reactivate a suspended user.
    Reactivate {
        /// User id.
        user: String,
    },
    /// Remove a user for good.
    Remove {
        /// User id.
        user: String,
    },
    /// Show a user's status and memberships.
    Show {
        /// User id.
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Options shared by both `create` commands.
#[derive(Debug, Args)]
pub struct CreateOptions {
    /// A label for the credential.
    #[arg(long)]
    pub name: String,
    /// Lifetime: 90s, 15m, 12h, 30d or never (default: policy.default_lifetime).
    #[arg(long)]
    pub expires: Option<String>,
    /// Narrow to these permissions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub permissions: Option<Vec<String>>,
}

/// `patgate token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a PAT; prints the secret once on stdout.
    Create {
        /// Owner.
        #[arg(long)]
        user: String,
        /// Org the token acts in.
        #[arg(long)]
        org: String,
        /// Name, lifetime, permissions.
        #[command(flatten)]
        options: CreateOptions,
    },
    /// List a user's PATs (never their secrets).
    List {
        /// Owner.
        #[arg(long)]
        user: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a PAT by prefix, immediately.
    Revoke {
        /// The 10-character prefix (pat_xxxxxx).
        prefix: String,
    },
    /// Revoke every live credential (PATs and API keys) not used for a while; lists them.
    Prune {
        /// How long unused (counting from creation when never used), e.g. 90d.
        #[arg(long = "unused-for")]
        unused_for: String,
        /// Only list what would be revoked.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Only this org's credentials.
        #[arg(long)]
        org: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `patgate audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the latest audit entries, oldest first; `--follow` keeps printing new ones.
    Tail {
        /// How many of the latest entries to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing entries as they are appended (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
        /// Read the denied-request stream instead of the management actions.
        #[arg(long)]
        denied: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// `patgate apikey ...`
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an org API key; prints the secret once on stdout.
    Create {
        /// Org that owns the key.
        #[arg(long)]
        org: String,
        /// The key's fixed role (at most the creator's).
        #[arg(long)]
        role: String,
        /// The org admin creating it.
        #[arg(long = "created-by")]
        created_by: String,
        /// Name, lifetime, permissions.
        #[command(flatten)]
        options: CreateOptions,
    },
    /// List an org's API keys (never their secrets).
    List {
        /// Org id.
        #[arg(long)]
        org: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by prefix, immediately.
    Revoke {
        /// The 10-character prefix (key_xxxxxx).
        prefix: String,
    },
}
