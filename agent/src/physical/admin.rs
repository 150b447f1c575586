//! The few admin commands the backupCursor and fsyncLock modes send, behind a trait so
//! that their handling can be tested over recorded server replies and injected faults.

use bson::Document;
use std::future::Future;

/// A failed command: the server's code when it answered, else only the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", .code.map(|c| format!(" (code {c})")).unwrap_or_default())]
pub struct CmdFailure {
    pub code: Option<i32>,
    pub message: String,
}

/// Runs a command on the node's `admin` database.
pub trait AdminCommands: Send + Sync {
    fn run(&self, cmd: Document) -> impl Future<Output = Result<Document, CmdFailure>> + Send;
}

impl AdminCommands for mongodb::Client {
    async fn run(&self, cmd: Document) -> Result<Document, CmdFailure> {
        self.database("admin")
            .run_command(cmd)
            .await
            .map_err(|e| CmdFailure {
                code: match e.kind.as_ref() {
                    mongodb::error::ErrorKind::Command(c) => Some(c.code),
                    _ => None,
                },
                message: crate::node::concise(&e),
            })
    }
}

#[cfg(test)]
pub mod fake {
    //! A scripted server: replies in order, every command recorded.
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Scripted {
        pub replies: Mutex<std::collections::VecDeque<Result<Document, CmdFailure>>>,
        pub sent: Mutex<Vec<Document>>,
    }

    impl Scripted {
        pub fn new(replies: Vec<Result<Document, CmdFailure>>) -> Self {
            Self {
                replies: Mutex::new(replies.into()),
                sent: Mutex::new(Vec::new()),
            }
        }

        pub fn sent(&self) -> Vec<Document> {
            self.sent.lock().map(|g| g.clone()).unwrap_or_default()
        }
    }

    impl AdminCommands for Scripted {
        async fn run(&self, cmd: Document) -> Result<Document, CmdFailure> {
            if let Ok(mut g) = self.sent.lock() {
                g.push(cmd);
            }
            self.replies
                .lock()
                .ok()
                .and_then(|mut g| g.pop_front())
                .unwrap_or_else(|| {
                    Err(CmdFailure {
                        code: None,
                        message: "no scripted reply left".into(),
                    })
                })
        }
    }

    pub fn fail(code: i32, msg: &str) -> Result<Document, CmdFailure> {
        Err(CmdFailure {
            code: Some(code),
            message: msg.into(),
        })
    }
}
