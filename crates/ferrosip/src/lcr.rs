//! `ferrosip lcr …`: least-cost routing data tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use ferrosip_db::Db;
use ferrosip_mod_lcr::import;
use ferrosip_mod_lcr::load::Tables;

#[derive(Subcommand)]
pub enum LcrCommand {
    /// Load a carrier rate sheet into the rules of one LCR instance: for every prefix the
    /// cheapest carrier gets priority 0 (tried first), the next rate 1, and so on; equal
    /// rates share a priority. Replaces every lcr_rule/lcr_rule_target row of the
    /// instance in one transaction; a running server picks them up on `lcr.reload` or
    /// SIGHUP.
    ///
    /// The CSV has a header line naming the columns carrier, prefix, rate and optionally
    /// effective_date (YYYY-MM-DD[ HH:MM:SS], UTC; rows dated in the future are skipped).
    /// Each carrier must be an lcr_gw row with that gw_name in the instance or in instance
    /// 0: gateways are not created by the import.
    Import {
        /// The database, as in `db_url` (sqlite:///path/file.db, mysql://..., postgres://...).
        #[arg(long = "db-url", value_name = "URL")]
        db_url: String,
        /// The LCR instance whose rules are replaced.
        #[arg(long = "lcr-id", value_name = "N", default_value_t = 1)]
        lcr_id: u32,
        /// The rate sheet.
        file: PathBuf,
    },
}

pub fn run(command: LcrCommand) -> ExitCode {
    crate::run_async_command(execute(command))
}

async fn execute(command: LcrCommand) -> Result<(), String> {
    match command {
        LcrCommand::Import {
            db_url,
            lcr_id,
            file,
        } => {
            if lcr_id == 0 {
                return Err(
                    "--lcr-id must be 1 or more (instance 0 holds shared gateways only)".into(),
                );
            }
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let sheet = import::parse_csv(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let plan = import::plan(&sheet, now).map_err(|e| format!("{}: {e}", file.display()))?;
            let db = Db::connect(&db_url).await.map_err(|e| e.to_string())?;
            let s = import::write(&db, &Tables::kamailio(), lcr_id, &plan).await?;
            println!(
                "lcr_id {lcr_id}: {} rules and {} targets written ({} rules replaced, {} future rows skipped)",
                s.rules, s.targets, s.replaced_rules, s.future_rows
            );
            Ok(())
        }
    }
}
