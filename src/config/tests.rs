use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "OPENAI_API_KEY" => Some("sk-canary-openai".into()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-canary".into()),
        "GEMINI_API_KEY" => Some("gem-canary".into()),
        "TOLLGATE_MASTER_KEY" => Some("sk-master-canary-0123".into()),
        _ => None,
    }
}

fn err(text: &str) -> ConfigError {
    Config::from_toml_with_env(text, env).expect_err("the configuration is refused")
}

const CHANNEL: &str = r#"
[[channels]]
id = "openai"
provider = "openai"
api_keys = ["${OPENAI_API_KEY}"]
models = ["gpt-4o"]
"#;

#[test]
fn empty_file_is_the_embedded_default() {
    let config = Config::from_toml_with_env("", env).unwrap();
    assert_eq!(config, Config::default());
    assert!(config.mock && config.observability.metrics);
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn the_documented_example_file_is_valid() {
    let text = include_str!("../../examples/gateway.toml");
    let config = Config::from_toml_with_env(text, env).unwrap();
    assert!(config.channels.len() >= 3);
    assert!(!config.models.is_empty());
}

#[test]
fn the_readme_multi_provider_example_is_valid() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("A complete multi-provider configuration:")
        .expect("the README section");
    let block = &readme[start..];
    let block = &block[block.find("```toml\n").unwrap() + 8..];
    let block = &block[..block.find("```").unwrap()];
    let config = Config::from_toml_with_env(block, |name| Some(format!("value-of-{name}")))
        .unwrap_or_else(|e| panic!("README example: {e}"));
    assert_eq!(config.channels.len(), 6);
    assert!(!config.mock);
    assert_eq!(config.alias("smart").unwrap().len(), 2);
}

#[test]
fn unknown_field_names_its_path() {
    let e = err("[cache]\npolicy = \"always\"\nttl = 5\n");
    assert_eq!(e.path(), "cache.ttl");
    assert!(e.message().contains("unknown field `ttl`"), "{e}");
    assert!(
        e.message().contains("ttl_seconds"),
        "says what is expected: {e}"
    );

    let e = err(&format!("{CHANNEL}wieght = 2\n"));
    assert_eq!(e.path(), "channels[0].wieght", "{e}");
}

#[test]
fn wrong_type_names_its_path_and_the_expected_type() {
    let e = err(&format!("{CHANNEL}weight = \"heavy\"\n"));
    assert_eq!(e.path(), "channels[0].weight");
    assert!(e.message().contains("expected u32"), "{e}");

    let e = err("listen = \"localhost\"\n");
    assert_eq!(e.path(), "listen");
    assert!(e.message().contains("socket address"), "{e}");

    let e = err("[limits.models]\n\"gpt-4o\" = { rpm = -1 }\n");
    assert_eq!(e.path(), "limits.models.gpt-4o.rpm");
}

#[test]
fn missing_secret_variable_names_the_field_and_the_variable() {
    let text = CHANNEL.replace("${OPENAI_API_KEY}", "${NOT_SET_ANYWHERE}");
    let e = err(&text);
    assert_eq!(e.path(), "channels[0].api_keys[0]");
    assert!(e.message().contains("`NOT_SET_ANYWHERE` is not set"), "{e}");

    let e = err("[auth]\nmaster_key = \"${NOPE}\"\n");
    assert_eq!(e.path(), "auth.master_key");
}

#[test]
fn unknown_strategy_lists_the_known_ones() {
    let e = err("[routing]\nstrategy = \"fastest\"\n");
    assert_eq!(e.path(), "routing.strategy");
    for name in [
        "weighted",
        "round_robin",
        "smooth_weighted",
        "priority",
        "latency",
        "success_rate",
        "cost",
        "composite",
    ] {
        assert!(e.message().contains(name), "{e}");
        let ok = format!("[routing]\nstrategy = \"{name}\"\n");
        let config = Config::from_toml_with_env(&ok, env).unwrap();
        assert_eq!(config.routing.strategy.as_str(), name);
    }
}

#[test]
fn unknown_provider_names_its_path() {
    let e = err(&CHANNEL.replace("provider = \"openai\"", "provider = \"azure\""));
    assert_eq!(e.path(), "channels[0].provider");
    assert!(e.message().contains("unknown variant `azure`"), "{e}");
    assert!(e.message().contains("anthropic"), "{e}");
}

#[test]
fn duplicate_channel_id_points_at_both() {
    let e = err(&format!("{CHANNEL}{CHANNEL}"));
    assert_eq!(e.path(), "channels[1].id");
    assert!(e.message().contains("duplicate channel id `openai`"), "{e}");
    assert!(e.message().contains("channels[0].id"), "{e}");
}

#[test]
fn channel_checks() {
    let e = err(&CHANNEL.replace("models = [\"gpt-4o\"]", "models = []"));
    assert_eq!(e.path(), "channels[0].models");
    let e = err(&format!("{CHANNEL}base_url = \"api.openai.com\"\n"));
    assert_eq!(e.path(), "channels[0].base_url");
    let e = err(&format!(
        "{CHANNEL}[channels.model_map]\n\"gpt-5\" = \"x\"\n"
    ));
    assert_eq!(e.path(), "channels[0].model_map.gpt-5");
    let e = err(&CHANNEL.replace("id = \"openai\"", "id = \"open/ai\""));
    assert_eq!(e.path(), "channels[0].id");
    let e = err(&CHANNEL.replace("\"gpt-4o\"]", "\"gpt-*-mini\"]"));
    assert_eq!(e.path(), "channels[0].models[0]");
}

#[test]
fn aliases_must_reach_a_channel() {
    let ok = format!(
        "{CHANNEL}[models]\nsmart = \"gpt-4o\"\ngroup = [\"openai/gpt-4o\", \"mock/echo\"]\n"
    );
    let config = Config::from_toml_with_env(&ok, env).unwrap();
    assert_eq!(config.alias("smart"), Some(&["gpt-4o".to_owned()][..]));
    assert_eq!(config.alias("group").unwrap().len(), 2);
    assert_eq!(config.alias("gpt-4o"), None);

    let e = err(&format!("{CHANNEL}[models]\nsmart = \"gpt-5\"\n"));
    assert_eq!(e.path(), "models.smart");
    let e = err(&format!("{CHANNEL}[models]\nsmart = []\n"));
    assert_eq!(e.path(), "models.smart");
    let e = err(&format!("{CHANNEL}[models]\na = \"gpt-4o\"\nb = \"a\"\n"));
    assert_eq!(e.path(), "models.b");
}

#[test]
fn not_toml_gives_the_line_without_echoing_it() {
    let e = err("[auth]\nmaster_key = \"sk-secret-unterminated\n");
    assert_eq!(e.path(), "");
    assert!(e.message().contains("line 2"), "{e}");
    assert!(!e.to_string().contains("sk-secret"), "{e}");
}

#[test]
fn secrets_never_print_or_serialise() {
    let text = format!("{CHANNEL}[auth]\nmaster_key = \"${{TOLLGATE_MASTER_KEY}}\"\n");
    let config = Config::from_toml_with_env(&text, env).unwrap();
    assert_eq!(
        config.auth.master_key.as_ref().unwrap().expose(),
        "sk-master-canary-0123"
    );
    let shown = format!("{config:?} {}", serde_json::to_string(&config).unwrap());
    assert!(!shown.contains("canary"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn errors_never_echo_a_value_from_the_environment() {
    // A key pasted into the wrong field: the message names the field, not the key.
    let e = err("[models]\nfast = \"${OPENAI_API_KEY}\"\n");
    assert_eq!(e.path(), "models.fast");
    assert!(!e.to_string().contains("sk-canary"), "{e}");
    assert!(e.message().contains("<redacted>"), "{e}");
    let e = err("listen = \"${OPENAI_API_KEY}\"\n");
    assert_eq!(e.path(), "listen");
    assert!(!e.to_string().contains("sk-canary"), "{e}");
}

#[test]
fn limits_and_prices_convert() {
    let text = r#"
        [limits.global]
        rpm = 600
        max_parallel = 8
        [prices."mock/*"]
        input = "1.50"
        output = "2"
    "#;
    let config = Config::from_toml_with_env(text, env).unwrap();
    let table = config.price_table();
    let price = table.get("mock/echo").unwrap();
    assert_eq!(price.input, "1.50".parse().unwrap());
    assert!(table.get("gpt-4o").is_some(), "the shipped table stays");
    let e = err("[limits.global]\nrpm = 0\n");
    assert_eq!(e.path(), "limits.global.rpm");
}

#[cfg(feature = "routing")]
#[test]
fn channels_become_a_routing_table_in_priority_order() {
    let text = r#"
        [[channels]]
        id = "backup"
        provider = "anthropic"
        models = ["claude-*"]
        priority = -1
        [[channels]]
        id = "main"
        provider = "openai"
        base_url = "http://127.0.0.1:9/v1"
        api_keys = ["k1", "k2"]
        models = ["gpt-4o", "claude-*"]
        model_map = { "gpt-4o" = "my-deployment" }
        [[channels]]
        id = "off"
        provider = "gemini"
        models = ["*"]
        enabled = false
    "#;
    let config = Config::from_toml_with_env(text, env).unwrap();
    let router = config.router(|b| b).unwrap();
    let order = |model: &str| -> Vec<(String, String)> {
        let candidates = router.resolve(model).unwrap();
        candidates
            .iter()
            .map(|c| (c.channel().id().to_owned(), c.model().to_owned()))
            .collect()
    };
    // Higher priority first; the mapped name goes upstream; the disabled channel is out.
    assert_eq!(
        order("claude-3-5-haiku"),
        [
            ("main".into(), "claude-3-5-haiku".into()),
            ("backup".into(), "claude-3-5-haiku".into())
        ]
    );
    assert_eq!(order("gpt-4o"), [("main".into(), "my-deployment".into())]);
    let main = router.channel("main").unwrap();
    assert_eq!(main.key_stats().len(), 2, "one slot per key");
    let candidates = router.resolve("gpt-4o").unwrap();
    let target = candidates.first().unwrap().target();
    assert_eq!(target.base_url(), "http://127.0.0.1:9/v1");
    assert!(["k1", "k2"].contains(&target.api_key().unwrap().expose()));
    assert!(!router.channel("off").unwrap().is_enabled());
    assert!(router.resolve("gemini-2.0-flash").is_err());
}

#[test]
fn a_config_built_in_code_is_validated_the_same_way() {
    let mut config = Config::default();
    config.channels.push(ChannelConfig::new(
        "local",
        Provider::Openai,
        vec!["llama-*".to_owned()],
    ));
    config
        .models
        .insert("big".to_owned(), Alias::new(vec!["llama-70b".to_owned()]));
    config.prices.insert(
        "llama-*".to_owned(),
        PriceConfig::new("0.10".parse().unwrap(), "0.20".parse().unwrap()),
    );
    config.validate().unwrap();
    assert!(config.price_table().get("llama-70b").is_some());
    config
        .models
        .insert("broken".to_owned(), Alias::new(vec!["gpt-9".to_owned()]));
    assert_eq!(config.validate().unwrap_err().path(), "models.broken");
}

#[test]
fn client_keys_in_the_file_are_checked_field_by_field() {
    let hex = "ab".repeat(32);
    for (text, path) in [
        ("[[auth.keys]]\nid = \"a\"\n", "auth.keys[0].key"),
        (
            "[[auth.keys]]\nid = \"a\"\nkey = \"tg-long-enough-key-1234\"\nkey_sha256 = \"00\"\n",
            "auth.keys[0].key",
        ),
        ("[[auth.keys]]\nid = \"a\"\nkey = \"short\"\n", "auth.keys[0].key"),
        ("[[auth.keys]]\nid = \"a\"\nkey_sha256 = \"xyz\"\n", "auth.keys[0].key_sha256"),
        (
            &format!("[[auth.keys]]\nid = \"a\"\nkey_sha256 = \"{hex}\"\nrole = \"root\"\n"),
            "auth.keys[0].role",
        ),
        (
            &format!("[[auth.keys]]\nid = \"a\"\nkey_sha256 = \"{hex}\"\n[[auth.keys]]\nid = \"a\"\nkey_sha256 = \"{hex}\"\n"),
            "auth.keys[1].id",
        ),
        ("[[auth.keys]]\nid = \"a\"\nkeys = \"x\"\n", "auth.keys[0].keys"),
    ] {
        let e = err(text);
        assert_eq!(e.path(), path, "{text}: {e}");
    }
    let config = Config::from_toml_with_env(
        &format!(
            "[[auth.keys]]\nid = \"a\"\nkey_sha256 = \"{hex}\"\nmodels = [\"mock/*\"]\nrpm = 5\n"
        ),
        env,
    )
    .unwrap();
    #[cfg(feature = "auth")]
    {
        let record = config.auth.keys[0].to_record().unwrap();
        assert_eq!(record.id, "a");
        assert_eq!(record.hash.to_hex(), hex);
        assert_eq!(record.limits.rpm, Some(5));
        assert_eq!(record.models.len(), 1);
    }
    let _ = config;
}
