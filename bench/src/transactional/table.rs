//! The transactional section's table, as the README copies it.

use serde_json::Value;

/// Prints the section's table (the README's copy comes from here).
pub fn print_table(r: &Value) {
    let ms = |v: &Value| format!("{} / {} / {}", v["p50"], v["p95"], v["p99"]);
    let cost = |c: &Value| {
        if c.is_null() {
            "-".to_owned()
        } else {
            format!(
                "{} / {} / {}",
                c["executions"], c["events"], c["billable_actions"]
            )
        }
    };
    println!();
    println!(
        "| one-recipient email, {} in flight | requests | completed/s | accept p50 / p95 / p99 ms | trigger-to-delivered p50 / p95 / p99 ms | executions / events / billable actions per request |",
        r["concurrency"]
    );
    println!("|---|---|---|---|---|---|");
    for (name, run, cost_key) in [
        ("Fanout (direct path)", "fanout", "fanout_cost"),
        ("Fanout, tree path (before)", "tree", "tree_cost"),
        (
            "minimal Temporal (1 workflow + 1 activity)",
            "minimal",
            "minimal_cost",
        ),
        ("direct loop, no Temporal", "direct", ""),
    ] {
        let x = &r[run];
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            x["requests"],
            x["completed_per_s"],
            if run == "direct" {
                "-".to_owned()
            } else {
                ms(&x["accept_ms"])
            },
            ms(&x["trigger_to_delivered_ms"]),
            cost(&r[cost_key])
        );
    }
    if let Some(phases) = r["fanout"]["accept_phases_ms"].as_object() {
        let p95: Vec<String> = phases
            .iter()
            .map(|(name, spread)| format!("{name} {}", spread["p95"]))
            .collect();
        println!(
            "Fanout accept, p95 of each phase (ms, the API's Server-Timing): {}",
            p95.join(", ")
        );
    }
    println!(
        "Fanout / minimal Temporal: {}x; Fanout / tree: {}x; Fanout / direct loop: {}x",
        r["fanout_over_minimal"], r["fanout_over_tree"], r["fanout_over_direct"]
    );
    let open = &r["open_loop"];
    println!(
        "open loop {}/s for {}s, trigger-to-delivered ms: p50 {} / p95 {} / p99 {} / max {}",
        open["per_s"],
        open["seconds"],
        open["trigger_to_delivered_ms"]["p50"],
        open["trigger_to_delivered_ms"]["p95"],
        open["trigger_to_delivered_ms"]["p99"],
        open["trigger_to_delivered_ms"]["max"]
    );
    println!();
    println!(
        "| noisy neighbour | B (20 high) p50 / p95 / max ms | A accepted in s | A drained in s |"
    );
    println!("|---|---|---|---|");
    for (name, key) in [
        ("priority and fairness on", "noisy_neighbour_on"),
        ("off", "noisy_neighbour_off"),
    ] {
        let n = &r[key];
        let b = &n["quiet_trigger_to_delivered_ms"];
        println!(
            "| {name} | {} / {} / {} | {} | {} |",
            b["p50"], b["p95"], b["max"], n["noisy_accepted_s"], n["noisy_drained_s"]
        );
    }
    println!(
        "B's p95, off over on: {}x",
        r["noisy_neighbour_p95_off_over_on"]
    );
}
