use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use atiende_core::auth::Password;
use atiende_core::types::Role;
use atiende_server::embedded_pg::test_suite;
use atiende_server::{Database, Settings, admin, demo};
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

/// Atiende: PQRS, field service and customer satisfaction under ISO 9001.
#[derive(Parser)]
#[command(name = "atiende", version)]
struct Cli {
    /// A TOML settings file (default: ATIENDE_CONFIG, or ./atiende.toml if it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Where the embedded PostgreSQL cluster lives when DATABASE_URL is not set (default ./data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the server with the demo organisation loaded (the same as `serve --demo`).
    Demo {
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Print a new VAPID key pair for Web Push (set the private key as ATIENDE_VAPID_PRIVATE_KEY).
    VapidKeys,
    /// Manage staff users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the processes of the quality system.
    #[command(subcommand)]
    Process(ProcessCommand),
    /// Customers the company registers (someone who called or came to the front desk).
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// The business calendar used for legal terms.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// The Telegram bot.
    #[command(subcommand)]
    Telegram(TelegramCommand),
    /// Find or start a PostgreSQL for the test suite and print `export DATABASE_URL='…'`.
    ///
    /// scripts/test runs `eval "$(atiende test-database)"`; what was chosen goes to standard error.
    /// In order: DATABASE_URL if set; else a server on 127.0.0.1:5432 that lets role `postgres`
    /// create databases without a password; else a private cluster of the installed PostgreSQL
    /// under --data-dir (here target/test-postgres unless given), left running for the next run.
    /// That cluster runs without fsync: never point it at data you want to keep.
    TestDatabase(TestDatabaseArgs),
}

#[derive(Args)]
struct TestDatabaseArgs {
    /// Always use the private cluster, even when DATABASE_URL is set or a server answers on
    /// 127.0.0.1 (a suite that must not share its server).
    #[arg(long)]
    private: bool,
    /// The port on 127.0.0.1 to look for a server on.
    #[arg(long, default_value_t = 5432)]
    port: u16,
}

/// Where `test-database` keeps its private cluster unless --data-dir says otherwise: apart from
/// the server's ./data, because it runs without fsync.
const TEST_DATA_DIR: &str = "target/test-postgres";

#[derive(Subcommand)]
enum TelegramCommand {
    /// Register the webhook (the public https URL of /api/v1/bots/telegram/webhook) with
    /// Telegram, with the webhook secret. Every server process shares it.
    SetWebhook { url: String },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080, or ATIENDE_LISTEN).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Also load the demo organisation (once) and print how to log in.
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a staff user; the password is read from standard input.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// technician, collaborator, process_leader, quality_director or admin.
        #[arg(long)]
        role: String,
        /// Process code the user belongs to (a process_leader becomes its leader).
        #[arg(long)]
        process: Option<String>,
        /// es or en.
        #[arg(long, default_value = "es")]
        language: String,
    },
    /// Deactivate a user: they can no longer log in, their sessions end and their sync
    /// connections close on every server.
    Deactivate {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum CustomerCommand {
    /// Add a verified customer, with the data-processing consent they gave.
    Add {
        /// CC, NIT, CE or PA.
        #[arg(long)]
        document_type: String,
        #[arg(long)]
        document_number: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        /// Where the customer accepted the data policy (Ley 1581 de 2012): phone, in_person or
        /// letter.
        #[arg(long, default_value = "in_person")]
        consent: String,
        /// What the customer reads: es or en.
        #[arg(long)]
        language: Option<String>,
        /// Also create the customer's app user (login: --email, then required) and e-mail them a
        /// single-use link to set the first password.
        #[arg(long)]
        app_user: bool,
    },
}

#[derive(Subcommand)]
enum ProcessCommand {
    /// Add a process.
    Add {
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        /// E-mail of an existing process_leader user.
        #[arg(long)]
        leader: Option<String>,
    },
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Print the due date (YYYY-MM-DD) of a term of N business days for a case filed on a date.
    Due {
        #[arg(long)]
        from: NaiveDate,
        #[arg(long)]
        days: u32,
    },
    /// List the holidays of a year, with overrides applied.
    Holidays {
        #[arg(long)]
        year: i32,
    },
    /// Declare an extra holiday (a new law or decree).
    AddHoliday {
        #[arg(long)]
        date: NaiveDate,
        #[arg(long)]
        name: String,
    },
    /// Make a computed holiday a business day.
    RemoveHoliday {
        #[arg(long)]
        date: NaiveDate,
    },
    /// Show the working hours of the SLA clocks, or set them, e.g. --set "mon-fri 08:00-17:00 -05:00".
    Hours {
        #[arg(long)]
        set: Option<String>,
    },
    /// Show the percentages of each term at which people are warned, or set them: --set 50,75,90.
    Warnings {
        #[arg(long, value_delimiter = ',')]
        set: Option<Vec<i16>>,
    },
    /// Drop the override on a date, going back to what the law computes.
    ClearOverride {
        #[arg(long)]
        date: NaiveDate,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = match Settings::load(cli.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = &cli.data_dir {
        settings.data_dir = dir.clone();
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::TestDatabase(args) => {
            let data_dir = cli.data_dir.unwrap_or_else(|| PathBuf::from(TEST_DATA_DIR));
            return runtime.block_on(test_database(args, &settings, data_dir));
        }
        other => other,
    };
    match runtime.block_on(execute(command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

/// Prints the `export DATABASE_URL=…` line for the test suite, or says on stderr what is missing.
async fn test_database(args: TestDatabaseArgs, settings: &Settings, data_dir: PathBuf) -> ExitCode {
    let search = test_suite::Search {
        database_url: settings
            .database_url
            .as_ref()
            .map(|u| u.expose().to_owned()),
        private: args.private,
        port: args.port,
        data_dir,
    };
    let say = |line: &str| eprintln!("atiende test-database: {line}");
    match test_suite::find_or_start(&search, say).await {
        Ok(url) => {
            println!("{}", test_suite::export_line(&url));
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, mut settings: Settings) -> Result<(), AnyError> {
    match command {
        Command::Serve(args) => {
            if let Some(listen) = args.listen {
                settings.listen = listen;
            }
            serve(settings, args.demo).await
        }
        Command::Demo { listen } => {
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            serve(settings, true).await
        }
        Command::Migrate => {
            let db = Database::open(&settings).await?;
            println!("migrations applied");
            db.close().await;
            Ok(())
        }
        Command::VapidKeys => {
            let (private, public) = atiende_server::push::generate_keys()?;
            println!("ATIENDE_VAPID_PRIVATE_KEY={private}");
            println!(
                "# public key (GET /api/v1/push/vapid-public-key serves it to the apps): {public}"
            );
            Ok(())
        }
        Command::Telegram(TelegramCommand::SetWebhook { url }) => {
            let Some(telegram) = settings.bots().telegram else {
                return Err("set the bot's token (ATIENDE_TELEGRAM_BOT_TOKEN) first".into());
            };
            atiende_bots::telegram::Telegram::new(telegram)?
                .set_webhook(&url)
                .await?;
            println!("Telegram now sends this bot's updates to {url}");
            Ok(())
        }
        other => with_database(&settings, other).await,
    }
}

/// Every sync device holds a socket, and each is a file descriptor: the soft open-files limit
/// (often 1,024) is raised to the hard one, so many devices work without the operator's help.
fn raise_open_files_limit() {
    let before = rlimit::Resource::NOFILE.get();
    match (before, rlimit::increase_nofile_limit(u64::MAX)) {
        (Ok((soft, hard)), Ok(now)) if now > soft => {
            tracing::info!(from = soft, to = now, hard, "raised the open-files limit")
        }
        (_, Ok(now)) => tracing::info!(limit = now, "open-files limit"),
        (_, Err(e)) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
}

async fn serve(settings: Settings, load_demo: bool) -> Result<(), AnyError> {
    raise_open_files_limit();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}: {e} (choose another with --listen or ATIENDE_LISTEN)",
                settings.listen
            )
        })?;
    let db = Database::open(&settings).await?;
    if load_demo {
        match demo::load(&db.pool, &settings.hashing()).await {
            Ok(passwords) => {
                print!(
                    "{}",
                    demo::instructions(
                        &format!("http://{}", settings.listen),
                        passwords.as_deref()
                    )
                );
            }
            Err(e) => {
                db.close().await;
                return Err(format!("loading the demo organisation: {e}").into());
            }
        }
    }
    let served = atiende_server::run(
        listener,
        db.pool.clone(),
        &settings,
        atiende_server::shutdown_signal(),
    )
    .await;
    db.close().await;
    tracing::info!("stopped");
    Ok(served?)
}

/// Admin commands: open the database, do one thing, close it, even when the thing fails.
async fn with_database(settings: &Settings, command: Command) -> Result<(), AnyError> {
    let db = Database::open(settings).await?;
    let result = admin_command(&db.pool, settings, command).await;
    db.close().await;
    result
}

async fn admin_command(
    pool: &sqlx::PgPool,
    settings: &Settings,
    command: Command,
) -> Result<(), AnyError> {
    match command {
        Command::User(UserCommand::Add {
            email,
            name,
            role,
            process,
            language,
        }) => {
            let role: Role = role.parse()?;
            let password = Password::parse(read_password()?)?;
            let user = admin::add_user(
                pool,
                &atiende_core::auth::Hashing::default(),
                admin::UserAdd {
                    email,
                    name,
                    role,
                    process,
                    language,
                },
                password,
            )
            .await?;
            println!("created {} {} ({})", user.role, user.email, user.id);
        }
        Command::User(UserCommand::Deactivate { email }) => {
            let user = admin::deactivate_user(pool, &email).await?;
            println!(
                "deactivated {} {} ({}): sessions revoked",
                user.role, user.email, user.id
            );
        }
        Command::Customer(CustomerCommand::Add {
            document_type,
            document_number,
            name,
            email,
            phone,
            consent,
            language,
            app_user,
        }) => {
            let (c, invitation) = atiende_core::customers::create(
                pool,
                atiende_core::customers::NewCustomer {
                    document_type: document_type.trim().to_uppercase().parse()?,
                    document_number,
                    name,
                    email,
                    phone,
                    consent_channel: consent,
                    language,
                },
                app_user.then_some(atiende_core::customers::AppUser {
                    created_by: None,
                    link_ttl: settings.account_setup_ttl(),
                }),
            )
            .await?;
            // A customer staff create always has a document.
            let document = c.document_type.map(|t| t.as_str()).unwrap_or_default();
            let number = c.document_number.as_deref().unwrap_or_default();
            println!("created customer {document} {number} {} ({})", c.name, c.id);
            if let Some(i) = invitation {
                println!(
                    "created app user {}: the link to set the password goes to {} and works until {}",
                    i.user_id, i.sent_to, i.expires_at
                );
            }
        }
        Command::Process(ProcessCommand::Add { code, name, leader }) => {
            let p = admin::add_process(pool, &code, &name, leader.as_deref()).await?;
            println!("created process {} ({})", p.code, p.name);
        }
        Command::Calendar(CalendarCommand::Due { from, days }) => {
            println!("{}", admin::due_date(pool, from, days).await?);
        }
        Command::Calendar(CalendarCommand::Holidays { year }) => {
            let calendar = atiende_core::holidays::load_calendar(pool).await?;
            for h in calendar.holidays(year) {
                println!("{}\t{}\t{:?}", h.date, h.name, h.source);
            }
        }
        Command::Calendar(CalendarCommand::AddHoliday { date, name }) => {
            atiende_core::holidays::add_override(pool, date, &name).await?;
            println!("{date} is now a holiday: {name}");
        }
        Command::Calendar(CalendarCommand::RemoveHoliday { date }) => {
            atiende_core::holidays::remove_holiday(pool, date).await?;
            println!("{date} is now a business day if it falls Monday to Friday");
        }
        Command::Calendar(CalendarCommand::Hours { set }) => {
            let hours = match set {
                Some(spec) => atiende_core::terms::set_working_hours(pool, &spec).await?,
                None => {
                    atiende_core::terms::load_schedule(&mut *pool.acquire().await?)
                        .await?
                        .hours
                }
            };
            println!("{hours}");
        }
        Command::Calendar(CalendarCommand::Warnings { set }) => {
            if let Some(percents) = set {
                atiende_core::terms::set_warning_percents(pool, &percents).await?;
            }
            let schedule = atiende_core::terms::load_schedule(&mut *pool.acquire().await?).await?;
            let shown: Vec<String> = schedule
                .warning_percents
                .iter()
                .map(|p| format!("{p} %"))
                .collect();
            println!(
                "warnings at {} of each term; breach alerts at 100 %",
                shown.join(", ")
            );
        }
        Command::Calendar(CalendarCommand::ClearOverride { date }) => {
            let cleared = atiende_core::holidays::clear_override(pool, date).await?;
            println!(
                "{}",
                if cleared {
                    format!("override on {date} removed")
                } else {
                    format!("there was no override on {date}")
                }
            );
        }
        Command::Serve(_)
        | Command::Demo { .. }
        | Command::Migrate
        | Command::VapidKeys
        | Command::Telegram(_)
        | Command::TestDatabase(_) => {
            unreachable!("handled by execute")
        }
    }
    Ok(())
}

fn read_password() -> Result<String, AnyError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (input is shown): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err("no password given on standard input".into());
    }
    Ok(password)
}
