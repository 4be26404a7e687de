//! Budgets from the command line (`forge run --max-cost-usd`, `--max-tokens`) and prices from
//! `forge.toml` (`[prices]`).

use clap::Args;
use forge_exec::{Plan, Prices};

use crate::config::Context;
use crate::error::{CliError, CliResult};

/// What the whole run may spend; overrides the plan's top-level `max_cost_usd` / `max_tokens`.
#[derive(Debug, Args, Default)]
pub(crate) struct BudgetFlags {
    /// Stop the run at this many US dollars spent (reported by the agents, or priced by
    /// `[prices]` in forge.toml): the attempt that goes over is stopped, nothing new starts.
    #[arg(long = "max-cost-usd", value_name = "USD", value_parser = positive_usd)]
    pub(crate) max_cost_usd: Option<f64>,
    /// Stop the run at this many tokens (input and output) used.
    #[arg(long = "max-tokens", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_tokens: Option<u64>,
}

fn positive_usd(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "`{text}` is not an amount of US dollars above zero (such as 2.5)"
        )),
    }
}

/// Sets the run's budget from the flags given.
pub(crate) fn apply_flags(plan: &mut Plan, flags: &BudgetFlags) {
    if let Some(usd) = flags.max_cost_usd {
        plan.budget.max_cost_usd = Some(usd);
    }
    if let Some(n) = flags.max_tokens {
        plan.budget.max_tokens = Some(n);
    }
}

/// `builder` with the `[prices]` of forge.toml.
pub(crate) fn with_prices(
    builder: forge_exec::ExecutionManagerBuilder,
    ctx: &Context,
) -> CliResult<forge_exec::ExecutionManagerBuilder> {
    Ok(builder.prices(prices(ctx)?))
}

/// The `[prices]` of forge.toml (none without the file or the table).
pub(crate) fn prices(ctx: &Context) -> CliResult<Prices> {
    let Some(path) = &ctx.config.path else {
        return Ok(Prices::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, &e))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{} is not valid TOML: {}",
            path.display(),
            e.message()
        ))
    })?;
    Prices::from_config(&table, path).map_err(|e| {
        CliError::usage(e.to_string()).hint("fix `[prices]` in forge.toml, or remove it")
    })
}
