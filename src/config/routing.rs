//! `[[channels]]`, `[models]` and `[routing]` as a routing table
//! ([`Router`](crate::routing::Router)).

use super::channels::ChannelConfig;
use super::{Config, ConfigError, Strategy};
use crate::routing::{
    Channel, ChannelBuilder, Composite, HighestSuccessRate, LowestCost, LowestLatency, Priority,
    RoundRobin, Router, RouterBuilder, SmoothWeightedRoundRobin, WeightedRandom,
};
use crate::upstream::{ApiKey, Target};

impl Config {
    /// The routing table these sections describe: one channel per `[[channels]]` entry
    /// (disabled ones included, so they can be enabled at run time), the `[models]`
    /// aliases, the `[routing]` strategy and, with `metering`, the price table for the
    /// cost strategies. `extra` adds channels built in code (the example gateway's
    /// mock) before it is built.
    pub fn router(
        &self,
        extra: impl FnOnce(RouterBuilder) -> RouterBuilder,
    ) -> Result<Router, ConfigError> {
        let mut builder = Router::builder();
        for (i, channel) in self.channels.iter().enumerate() {
            builder = builder.channel(channel_builder(channel, i)?);
        }
        for (alias, models) in &self.models {
            builder = builder.alias(alias.clone(), models.models().iter().cloned());
        }
        builder = match self.routing.strategy {
            Strategy::Weighted => builder.strategy(WeightedRandom::new()),
            Strategy::RoundRobin => builder.strategy(RoundRobin::new()),
            Strategy::SmoothWeighted => builder.strategy(SmoothWeightedRoundRobin::new()),
            Strategy::Priority => builder.strategy(Priority::new()),
            Strategy::Latency => builder.strategy(LowestLatency::new()),
            Strategy::SuccessRate => builder.strategy(HighestSuccessRate::new()),
            Strategy::Cost => builder.strategy(LowestCost::new()),
            Strategy::Composite => builder.strategy(Composite::default()),
        };
        #[cfg(feature = "metering")]
        {
            builder = builder.prices(&self.price_table());
        }
        extra(builder)
            .build()
            .map_err(|e| ConfigError::new("channels", e.to_string()))
    }
}

/// One `[[channels]]` entry as a channel: its keys, its models (`name`, `prefix*`,
/// `*`) with their `model_map` names, weight, priority and state.
fn channel_builder(channel: &ChannelConfig, i: usize) -> Result<ChannelBuilder, ConfigError> {
    let target = Target::with_dialect(
        channel.id.as_str(),
        channel.base_url(),
        channel.provider.dialect(),
    )
    .map_err(|e| ConfigError::new(format!("channels[{i}].base_url"), e.to_string()))?;
    let mut builder = Channel::builder(channel.id.as_str(), target)
        .keys(channel.api_keys.iter().map(|k| ApiKey::new(k.expose())))
        .weight(channel.weight)
        .priority(rank(channel.priority))
        .enabled(channel.enabled);
    for model in &channel.models {
        builder = match model.strip_suffix('*') {
            // Every model: as a catch-all for names no other channel serves, and by
            // its prefixed name (`<id>/<model>`).
            Some("") => builder.model_prefix("").any_model(),
            Some(prefix) => builder.model_prefix(prefix),
            None if channel.model_map.contains_key(model) => builder,
            None => builder.model(model.as_str()),
        };
    }
    for (requested, sent) in &channel.model_map {
        builder = builder.model_as(requested.as_str(), sent.as_str());
    }
    Ok(builder)
}

/// The configuration ranks channels "higher priority first"; the router "lower first".
fn rank(priority: i32) -> u32 {
    (i64::from(i32::MAX) - i64::from(priority)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_keep_their_order() {
        assert!(rank(10) < rank(0));
        assert!(rank(0) < rank(-5));
        assert_eq!(rank(i32::MAX), 0);
        assert_eq!(rank(i32::MIN), u32::MAX);
    }

    #[test]
    fn channels_models_aliases_and_strategy_become_a_router() {
        let config = Config::from_toml(
            r#"
            [routing]
            strategy = "priority"

            [models]
            smart = ["gpt-4o"]

            [[channels]]
            id = "azure"
            provider = "openai"
            base_url = "https://example.openai.azure.com/v1"
            api_keys = ["sk-azure"]
            models = ["gpt-4o"]
            model_map = { "gpt-4o" = "my-deployment" }
            priority = 10

            [[channels]]
            id = "openai"
            provider = "openai"
            api_keys = ["sk-a", "sk-b"]
            models = ["gpt-4o", "o3*"]

            [[channels]]
            id = "claude"
            provider = "anthropic"
            models = ["*"]
            enabled = false
            "#,
        )
        .unwrap();
        let router = config.router(|b| b).unwrap();
        assert_eq!(router.channels().len(), 3);
        let first = |model: &str| {
            let candidates = router.resolve(model).unwrap();
            let c = candidates.first().unwrap();
            (c.channel().id().to_owned(), c.model().to_owned())
        };
        assert_eq!(
            first("smart"),
            ("azure".into(), "my-deployment".into()),
            "higher priority first, renamed"
        );
        assert_eq!(first("o3-mini"), ("openai".into(), "o3-mini".into()));
        assert_eq!(router.channel("openai").unwrap().key_stats().len(), 2);
        assert!(!router.channel("claude").unwrap().is_enabled());
        assert!(
            router.resolve("claude-3").is_err(),
            "a disabled catch-all serves nothing"
        );
        router.channel("claude").unwrap().set_enabled(true);
        assert_eq!(first("claude-3").0, "claude");
    }
}
