//! rbm-agent: the engines behind the `rbm-agent` daemon and the `rbm` CLI.
