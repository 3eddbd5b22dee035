//! `fanout send`: builds a notify body from flags and posts it (`POST /v1/notify`, with
//! `?dry_run=true` for a preview).

use clap::Args;
use fanout_domain::Channel;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::client::{Api, Auth, Failure};
use crate::output::{self, Table};

/// `fanout send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The template to render.
    #[arg(long, short)]
    pub template: String,
    /// Who receives it.
    #[command(flatten)]
    pub audience: Audience,
    /// A template variable, `data.KEY` (repeat it). The value is JSON when it parses as JSON
    /// (`n=3`, `ok=true`, `tags=["a"]`), else a string; a dotted key nests (`order.id=7`).
    #[arg(long = "data", short, value_name = "KEY=VALUE")]
    pub data: Vec<String>,
    /// The channels to deliver over [default: every channel the template has]
    #[arg(long, value_delimiter = ',', value_name = "CHANNEL,...")]
    pub channels: Vec<Channel>,
    /// The idempotency key: the same key within the dedupe window returns the first request
    /// [default: a random one, printed]
    #[arg(long)]
    pub dedupe_key: Option<String>,
    /// Who triggered it (left out of the audience).
    #[arg(long)]
    pub actor: Option<String>,
    /// `high`, `normal` or `low`.
    #[arg(long, value_parser = ["high", "normal", "low"])]
    pub priority: Option<String>,
    /// Confirms an audience over the blast-radius limit (at least its estimated size).
    #[arg(long, value_name = "N")]
    pub confirm_audience: Option<u64>,
    /// Preview only: what the request would do; nothing is recorded or sent.
    #[arg(long)]
    pub dry_run: bool,
    /// When to send it [default: now].
    #[command(flatten)]
    pub when: When,
}

/// A scheduled time: at most one of the two.
#[derive(Debug, Default, Args)]
#[group(multiple = false)]
pub struct When {
    /// Send at this instant (RFC 3339 with an offset, e.g. 2026-12-05T09:00:00Z); the request
    /// is `scheduled` until then.
    #[arg(long, value_name = "INSTANT")]
    pub at: Option<String>,
    /// Send this many seconds from now.
    #[arg(long = "in", value_name = "SECONDS")]
    pub delay: Option<u32>,
}

impl When {
    /// Adds `send_at` or `delay_seconds` to a body.
    pub fn write(&self, body: &mut Value) {
        if let Some(at) = &self.at {
            body["send_at"] = json!(at);
        }
        if let Some(delay) = self.delay {
            body["delay_seconds"] = json!(delay);
        }
    }
}

/// Exactly one audience.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Audience {
    /// These users (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "USER,...")]
    pub users: Vec<String>,
    /// Everyone following this user.
    #[arg(long, value_name = "USER")]
    pub followers_of: Option<String>,
    /// The members of this segment.
    #[arg(long, value_name = "SEGMENT")]
    pub segment: Option<String>,
}

impl Audience {
    /// The notify body's `recipients_query`.
    pub fn query(&self) -> Value {
        if let Some(of) = &self.followers_of {
            json!({"type": "followers", "of": of})
        } else if let Some(segment) = &self.segment {
            json!({"type": "segment", "segment_id": segment})
        } else {
            json!({"type": "users", "user_ids": self.users})
        }
    }
}

/// Sends (or previews) the notification and prints the answer.
pub async fn send(api: &Api, args: SendArgs, json: bool) -> Result<(), Failure> {
    let body = body(&args)?;
    let url = api.url(
        &["v1", "notify"],
        &[("dry_run", args.dry_run.then(|| "true".to_owned()))],
    );
    let answer = api
        .call(Auth::Tenant, Method::POST, url, Some(&body))
        .await?;
    if json {
        output::print_json(&answer);
    } else if args.dry_run {
        print_preflight(&answer);
    } else {
        let id = output::cell(&answer["request_id"]);
        if answer["duplicate"] == true {
            println!("duplicate of {id}: the dedupe key was used before, nothing new started");
        } else if args.when.at.is_some() || args.when.delay.is_some() {
            println!(
                "scheduled {id}: it waits for its time; move it with `fanout reschedule {id}`"
            );
        } else {
            println!("accepted {id}");
        }
        println!("dedupe key: {}", output::cell(&body["dedupe_key"]));
        println!("follow it:  fanout status {id} --watch");
    }
    Ok(())
}

/// The notify body the flags describe.
pub fn body(args: &SendArgs) -> Result<Value, Failure> {
    let mut body = json!({
        "template_id": args.template,
        "recipients_query": args.audience.query(),
        "data": data(&args.data)?,
        "dedupe_key": args
            .dedupe_key
            .clone()
            .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4())),
    });
    if !args.channels.is_empty() {
        body["channel_prefs"] = json!(args.channels);
    }
    if let Some(actor) = &args.actor {
        body["actor_id"] = json!(actor);
    }
    if let Some(priority) = &args.priority {
        body["priority"] = json!(priority);
    }
    if let Some(n) = args.confirm_audience {
        body["confirm_audience"] = json!(n);
    }
    args.when.write(&mut body);
    Ok(body)
}

/// The `data` object from `KEY=VALUE` pairs.
pub fn data(pairs: &[String]) -> Result<Value, Failure> {
    let mut root = Map::new();
    for pair in pairs {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--data '{pair}' is not KEY=VALUE")))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Failure::Usage(format!(
                "--data '{pair}': the key has an empty part"
            )));
        }
        insert(&mut root, &parts, value).map_err(|()| {
            Failure::Usage(format!("--data '{pair}' conflicts with another --data"))
        })?;
    }
    Ok(Value::Object(root))
}

fn insert(map: &mut Map<String, Value>, path: &[&str], value: Value) -> Result<(), ()> {
    match path {
        [] => Err(()),
        [last] => match map.get(*last) {
            Some(_) => Err(()),
            None => {
                map.insert((*last).to_owned(), value);
                Ok(())
            }
        },
        [first, rest @ ..] => {
            let entry = map
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(inner) => insert(inner, rest, value),
                _ => Err(()),
            }
        }
    }
}

fn print_preflight(p: &Value) {
    println!(
        "dry run: nothing was recorded or sent (template {} v{}, category {})",
        output::cell(&p["template_id"]),
        output::cell(&p["template_version"]),
        output::cell(&p["category"])
    );
    let audience = &p["audience"];
    println!(
        "audience: {} {} members, {} unknown users, {} recipients",
        output::cell(&audience["type"]),
        output::cell(&audience["members"]),
        output::cell(&audience["unknown_users"]),
        output::cell(&audience["recipients"])
    );
    let mut table = Table::new(&[
        "CHANNEL",
        "RECIPIENTS",
        "NO_ADDRESS",
        "OPTED_OUT",
        "SUPPRESSED",
        "DELIVERABLE",
    ]);
    if let Some(channels) = p["channels"].as_object() {
        for (channel, c) in channels {
            table.row(vec![
                channel.clone(),
                output::cell(&c["recipients"]),
                output::cell(&c["no_address"]),
                output::cell(&c["opted_out"]),
                output::cell(&c["suppressed"]),
                output::cell(&c["deliverable"]),
            ]);
        }
    }
    table.print();
    if let Some(skipped) = p["channels_skipped"].as_object() {
        for (channel, why) in skipped {
            println!("skipped {channel}: {}", output::cell(why));
        }
    }
    let eta = &p["estimated_completion"];
    println!(
        "deliverable: {} (exact: {}), about {} s at {}/s (limited by {})",
        output::cell(&p["deliverable"]),
        output::cell(&p["exact"]),
        output::cell(&eta["seconds"]),
        output::cell(&eta["deliveries_per_second"]),
        output::cell(&eta["limited_by"])
    );
    let blast = &p["blast_radius"];
    if blast["exceeded"] == true {
        println!(
            "blast radius: over the {} limit of {}: send with --confirm-audience {}",
            output::cell(&blast["source"]),
            output::cell(&blast["limit"]),
            output::cell(&audience["recipients"])
        );
    }
    if let Some(missing) = p["missing_data"].as_array().filter(|m| !m.is_empty()) {
        let names: Vec<String> = missing.iter().map(output::cell).collect();
        println!(
            "missing data: {} (a real send is refused until they are given)",
            names.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn data_values_are_json_when_they_parse_and_strings_otherwise() {
        let d = data(&pairs(&[
            "actor=Dana",
            "n=3",
            "ok=true",
            "tags=[\"a\"]",
            "quoted=\"7\"",
            "order.id=7",
            "order.sku=x-1",
            "eq=a=b",
        ]))
        .unwrap();
        assert_eq!(
            d,
            json!({"actor": "Dana", "n": 3, "ok": true, "tags": ["a"], "quoted": "7",
                   "order": {"id": 7, "sku": "x-1"}, "eq": "a=b"})
        );
    }

    #[test]
    fn malformed_or_conflicting_data_is_a_usage_error() {
        for bad in [
            &["novalue"][..],
            &["a=1", "a.b=2"],
            &["a=1", "a=2"],
            &[".x=1"],
        ] {
            let e = data(&pairs(bad)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn each_audience_flag_makes_its_recipients_query() {
        let mut a = Audience {
            users: vec!["alice".into(), "bob".into()],
            followers_of: None,
            segment: None,
        };
        assert_eq!(
            a.query(),
            json!({"type": "users", "user_ids": ["alice", "bob"]})
        );
        a.users.clear();
        a.followers_of = Some("star".into());
        assert_eq!(a.query(), json!({"type": "followers", "of": "star"}));
        a.followers_of = None;
        a.segment = Some("beta".into());
        assert_eq!(a.query(), json!({"type": "segment", "segment_id": "beta"}));
    }
}
