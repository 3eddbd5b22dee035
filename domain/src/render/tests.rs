use crate::user::{EmailAddress, Timezone};
use crate::{DedupeKey, TenantId, UserId};

use super::*;

fn user(locale: Option<&str>) -> User {
    User {
        user_id: UserId::parse("u1").unwrap(),
        email: Some(EmailAddress::parse("ada@example.com").unwrap()),
        name: Some("Ada".into()),
        locale: locale.map(str::to_owned),
        timezone: Some(Timezone::parse("Europe/Paris").unwrap()),
        devices: Vec::new(),
        quiet_hours: None,
    }
}

fn ctx_for(locale: Option<&str>, data: serde_json::Value) -> RenderContext {
    let req = DedupeKey::new(TenantId::parse("t").unwrap(), "k")
        .unwrap()
        .request_id();
    context(data.as_object().unwrap(), &user(locale), &req)
}

fn ctx(data: serde_json::Value) -> RenderContext {
    ctx_for(Some("en"), data)
}

fn in_app(title: &str, body: &str) -> InAppContent {
    InAppContent {
        title: title.into(),
        body: body.into(),
        action_url: None,
        payload: BTreeMap::new(),
    }
}

fn only_in_app(title: &str, body: &str) -> ChannelContent {
    ChannelContent {
        in_app: Some(in_app(title, body)),
        ..ChannelContent::default()
    }
}

#[test]
fn renders_data_and_user_and_escapes_html_only() {
    let compiled = Compiled::email(&EmailContent {
        subject: "{{ data.actor }} commented".into(),
        text: "Hi {{ user.name }}: {{ data.comment }}".into(),
        html: Some("<p>{{ data.comment }}</p>".into()),
    })
    .unwrap();
    let out = compiled
        .render_email(&ctx(
            serde_json::json!({"actor": "Bob", "comment": "<b>yo</b>"}),
        ))
        .unwrap();
    assert_eq!(out.subject, "Bob commented");
    assert_eq!(out.text, "Hi Ada: <b>yo</b>");
    assert_eq!(
        out.html.as_deref(),
        Some("<p>&lt;b&gt;yo&lt;&#x2f;b&gt;</p>")
    );
}

#[test]
fn the_context_offers_what_validation_accepts() {
    let fields = USER_FIELDS
        .map(|f| format!("{f}={{{{ user.{f} }}}}"))
        .join(" ");
    let content = only_in_app("{{ request_id }}", &format!("{fields} {{{{ data.x }}}}"));
    validate(&content, &BTreeMap::new()).unwrap();
    let out = Compiled::new(&content, &BTreeMap::new())
        .unwrap()
        .render_in_app(&ctx(serde_json::json!({"x": 1})))
        .unwrap();
    assert_eq!(
        out.body,
        "user_id=u1 name=Ada email=ada@example.com locale=en timezone=Europe/Paris 1"
    );
    assert!(!out.title.is_empty());
}

#[test]
fn versions_from_before_data_namespacing_still_render() {
    let compiled = Compiled::in_app(&in_app("{{ actor }}", "{{ user.id }}")).unwrap();
    let out = compiled
        .render_in_app(&ctx(serde_json::json!({"actor": "Bob"})))
        .unwrap();
    assert_eq!((out.title.as_str(), out.body.as_str()), ("Bob", "u1"));
}

#[test]
fn undefined_variables_fail_with_the_part_named() {
    let compiled = Compiled::in_app(&in_app("t", "{{ data.missing }}")).unwrap();
    let err = compiled
        .render_in_app(&ctx(serde_json::json!({})))
        .unwrap_err();
    assert_eq!(err.part, "in_app.body");
}

#[test]
fn syntax_errors_name_part_and_line() {
    let err = check_in_app(&in_app("ok", "line one\n{{ broken")).unwrap_err();
    assert_eq!(err.part, "in_app.body");
    assert!(err.message.contains("line 2"), "{}", err.message);
}

#[test]
fn validation_locates_syntax_errors_by_channel_field_locale_line_and_column() {
    let mut locales = BTreeMap::new();
    locales.insert(
        "fr".to_owned(),
        only_in_app("Salut", "ligne un\n  {{ data.x }} {% if %}"),
    );
    let problems = validate(&only_in_app("Hi", "{{ data.x }}"), &locales).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert_eq!(p.kind, ProblemKind::Syntax);
    assert_eq!(p.channel, Channel::InApp);
    assert_eq!(p.field, "body");
    assert_eq!(p.locale.as_deref(), Some("fr"));
    assert_eq!(p.path(), "locales.fr.in_app.body");
    assert_eq!(p.line, Some(2));
    let column = p.column.expect("a syntax error has a column");
    assert!((15..=22).contains(&column), "{p}");
}

#[test]
fn validation_rejects_unknown_variables_with_their_position() {
    let content = ChannelContent {
        email: Some(EmailContent {
            subject: "Hi {{ user.name }}".into(),
            text: "Hello\n  {{ actor }} and {{ user.nmae }}".into(),
            html: None,
        }),
        ..ChannelContent::default()
    };
    let problems = validate(&content, &BTreeMap::new()).unwrap_err();
    let found: Vec<_> = problems
        .iter()
        .map(|p| {
            (
                p.kind,
                p.path(),
                p.line,
                p.column,
                p.message.split(':').next().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                ProblemKind::UnknownVariable,
                "email.text".to_owned(),
                Some(2),
                Some(6),
                "unknown variable 'actor'".to_owned()
            ),
            (
                ProblemKind::UnknownVariable,
                "email.text".to_owned(),
                Some(2),
                Some(22),
                "unknown variable 'user.nmae'".to_owned()
            ),
        ]
    );
    assert!(
        problems[0].message.contains("data.actor"),
        "{}",
        problems[0]
    );
}

#[test]
fn validation_accepts_loops_sets_and_builtins() {
    let content = only_in_app(
        "{% set n = data.items | length %}{{ n }}",
        "{% for i in range(3) %}{{ loop.index }}{{ i }}{% endfor %}\
             {% for item in data.items %}{{ item.name | upper }}{% endfor %}",
    );
    validate(&content, &BTreeMap::new()).unwrap();
}

#[test]
fn locale_variants_render_per_channel_with_fallback() {
    let mut content = only_in_app("Hello {{ user.name }}", "en body");
    content.push = Some(PushContent {
        title: "Hi".into(),
        body: "en push".into(),
        data: BTreeMap::new(),
    });
    let mut locales = BTreeMap::new();
    locales.insert(
        "fr".to_owned(),
        only_in_app("Bonjour {{ user.name }}", "fr"),
    );
    locales.insert(
        "fr-CA".to_owned(),
        only_in_app("Allô {{ user.name }}", "ca"),
    );
    let compiled = Compiled::new(&content, &locales).unwrap();
    let title = |locale| {
        compiled
            .render_in_app(&ctx_for(locale, serde_json::json!({})))
            .unwrap()
            .title
    };
    assert_eq!(title(Some("fr-CA")), "Allô Ada");
    assert_eq!(title(Some("fr-FR")), "Bonjour Ada");
    assert_eq!(title(Some("de")), "Hello Ada");
    assert_eq!(title(None), "Hello Ada");
    // No French push: the default content serves it.
    let push = compiled
        .render_push(&ctx_for(Some("fr-CA"), serde_json::json!({})))
        .unwrap();
    assert_eq!(push.body, "en push");
}

#[test]
fn push_renders_title_body_and_each_data_value() {
    let compiled = Compiled::push(&PushContent {
        title: "{{ data.actor }} posted".into(),
        body: "Look, {{ user.name }}".into(),
        data: [
            (
                "url".to_owned(),
                "app://posts/{{ data.post_id }}".to_owned(),
            ),
            ("kind.html".to_owned(), "<{{ data.actor }}>".to_owned()),
        ]
        .into(),
    })
    .unwrap();
    let out = compiled
        .render_push(&ctx(serde_json::json!({"actor": "Bob", "post_id": 7})))
        .unwrap();
    assert_eq!(out.title, "Bob posted");
    assert_eq!(out.body, "Look, Ada");
    assert_eq!(out.data["url"], "app://posts/7");
    assert_eq!(out.data["kind.html"], "<Bob>", "push data is never escaped");
    assert!(compiled.render_email(&ctx(serde_json::json!({}))).is_err());
}

#[test]
fn action_urls_render_and_are_validated() {
    let mut content = only_in_app("t", "b");
    content.in_app.as_mut().unwrap().action_url = Some("https://x/{{ data.id }}".into());
    let out = Compiled::new(&content, &BTreeMap::new())
        .unwrap()
        .render_in_app(&ctx(serde_json::json!({"id": "p1"})))
        .unwrap();
    assert_eq!(out.action_url.as_deref(), Some("https://x/p1"));
    content.in_app.as_mut().unwrap().action_url = Some("{{ id }}".into());
    let problems = validate(&content, &BTreeMap::new()).unwrap_err();
    assert_eq!(problems[0].path(), "in_app.action_url");
}

#[test]
fn a_runaway_template_is_refused_when_written() {
    let runaway = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}";
    let problems = validate(&only_in_app("t", runaway), &BTreeMap::new()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::Limit, "{problems:?}");
    assert_eq!(problems[0].path(), "in_app.body");
    assert!(problems[0].message.contains("budget"), "{}", problems[0]);
    let huge = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}";
    let problems = validate(&only_in_app("t", huge), &BTreeMap::new()).unwrap_err();
    assert_eq!(problems[0].kind, ProblemKind::Limit, "{problems:?}");
    // A part that reads nothing and fails its trial render fails every render.
    let problems = validate(&only_in_app("t", "{{ 1 + 'a' }}"), &BTreeMap::new()).unwrap_err();
    assert_eq!(problems[0].kind, ProblemKind::Render, "{problems:?}");
    // Data-dependent parts are not refused for what sample values make of them.
    validate(&only_in_app("t", "{{ data.count + 1 }}"), &BTreeMap::new()).unwrap();
}

#[test]
fn renders_past_the_budget_fail_as_limits_not_template_errors() {
    // Valid when written (the sample data is short); the data makes it run away.
    let content = only_in_app(
        "t",
        "{% for a in data.items %}{% for b in data.items %}{% for c in data.items %}\
             {{ a }}{% endfor %}{% endfor %}{% endfor %}",
    );
    validate(&content, &BTreeMap::new()).unwrap();
    let compiled = Compiled::new(&content, &BTreeMap::new()).unwrap();
    let items: Vec<u32> = (0..200).collect();
    let err = compiled
        .render_in_app(&ctx(serde_json::json!({ "items": items })))
        .unwrap_err();
    assert_eq!(err.failure, RenderFailure::Limit, "{err}");
    assert_eq!(err.part, "in_app.body");
    // Output is capped too: a short loop writing a long string.
    let wide = only_in_app("t", "{% for a in range(100) %}{{ data.s }}{% endfor %}");
    let err = Compiled::new(&wide, &BTreeMap::new())
        .unwrap()
        .render_in_app(&ctx(serde_json::json!({ "s": "y".repeat(10_000) })))
        .unwrap_err();
    assert_eq!(err.failure, RenderFailure::Limit, "{err}");
    assert!(err.message.contains("output"), "{err}");
    // An ordinary undefined value stays a template failure.
    let err = compiled
        .render_in_app(&ctx(serde_json::json!({})))
        .unwrap_err();
    assert_eq!(err.failure, RenderFailure::Template);
}

#[test]
fn required_data_skips_defaults_tests_and_branches() {
    let mut content = only_in_app(
        "{{ data.product }} for {{ user.name }}",
        "{{ data.note | default('none') }}{% if data.extra is defined %}{{ data.extra }}\
             {% endif %}{{ data.order.id }}",
    );
    content.email = Some(EmailContent {
        subject: "{{ data.subject_only }}".into(),
        text: "t".into(),
        html: None,
    });
    let in_app = required_data(&content, &BTreeMap::new(), &[Channel::InApp]);
    assert_eq!(in_app, vec!["data.order.id", "data.product"]);
    let both = required_data(
        &content,
        &BTreeMap::new(),
        &[Channel::InApp, Channel::Email],
    );
    assert_eq!(
        both,
        vec!["data.order.id", "data.product", "data.subject_only"]
    );
    let data = serde_json::json!({"product": null, "order": {"no_id": 1}});
    assert_eq!(
        missing_data(&both, data.as_object().unwrap()),
        vec!["data.order.id", "data.subject_only"]
    );
}
