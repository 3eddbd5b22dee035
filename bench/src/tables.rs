//! The "fanout" section's two tables, printed as Markdown for the README: the mixed run with
//! its baselines, and each channel beside its sink's ceiling.

use serde_json::Value;

/// Prints the mixed run's table.
pub fn print_table(r: &Value) {
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    for key in [
        "recipients",
        "wall_s",
        "deliveries",
        "deliveries_per_s",
        "naive_deliveries_per_s",
        "speedup_vs_naive",
        "direct_deliveries_per_s",
        "email_per_connection_lettre_per_s",
        "email_per_connection_fanout_per_s",
        "email_per_connection_ratio",
        "fraction_of_direct",
        "history_events",
        "largest_history",
        "history_events_per_delivery",
        "naive_history_events_per_delivery",
        "worker_peak_rss_mb",
        "api_peak_rss_mb",
        "mixed_cpu_cores",
        "store_writes",
    ] {
        println!("| {key} | {} |", r[key]);
    }
}

/// Prints the per-channel table.
pub fn print_channel_table(r: &Value) {
    let cores = |c: &Value| {
        format!(
            "worker {} / temporal {} / sandbox+bench {} / machine {}",
            c["worker"], c["temporal"], c["bench_and_sandbox"], c["machine_busy"]
        )
    };
    println!();
    println!(
        "| channel | recipients | Fanout deliveries/s | sink ceiling sends/s | Fanout / ceiling | cores during Fanout | cores during ceiling | ceiling client |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    if let Some(channels) = r["per_channel"].as_object() {
        for (name, c) in channels {
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                c["recipients"],
                c["fanout_deliveries_per_s"],
                c["ceiling_per_s"],
                c["fanout_over_ceiling"],
                cores(&c["fanout_cpu_cores"]),
                cores(&c["ceiling_cpu_cores"]),
                c["ceiling_client"].as_str().unwrap_or_default()
            );
        }
    }
    println!(
        "one recipient, trigger to completed: {} s; mixed run cores: {}",
        r["one_recipient_latency_s"],
        cores(&r["mixed_cpu_cores"])
    );
}
