//! Recognising SecantusDB, the MongoDB-wire-protocol server rbm's tests run on (there is
//! no mongod on the test machines). Each engine keeps its handling of the server's
//! differences in its own named `secantus` module; this only says which server it is.

use bson::doc;
use mongodb::Client;

/// SecantusDB reports mongod's version with an all-zero `gitVersion`; mongod and
/// Percona Server report their real commit.
pub async fn is_secantus(client: &Client) -> bool {
    match client
        .database("admin")
        .run_command(doc! {"buildInfo": 1})
        .await
    {
        Ok(r) => r
            .get_str("gitVersion")
            .is_ok_and(|g| !g.is_empty() && g.bytes().all(|b| b == b'0')),
        Err(_) => false,
    }
}
