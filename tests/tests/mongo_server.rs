//! The private-server helper itself: it starts, names its replica set as asked, accepts
//! writes, and leaves no process behind.

use rbm_e2e::MongoServer;

#[tokio::test]
async fn private_server_starts_named_and_stops() {
    let server = MongoServer::start_named("rbmtest1").await;
    let client = mongodb::Client::with_uri_str(server.uri())
        .await
        .expect("client");
    let hello = client
        .database("admin")
        .run_command(mongodb::bson::doc! {"hello": 1})
        .await
        .expect("hello");
    assert_eq!(hello.get_str("setName").ok(), Some("rbmtest1"));
    client
        .database("t")
        .collection::<mongodb::bson::Document>("c")
        .insert_one(mongodb::bson::doc! {"x": 1})
        .await
        .expect("insert");
    let port = server.port();
    drop(client);
    drop(server);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening on {port} after drop"
    );
}
