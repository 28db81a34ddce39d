//! The socket: protocol messages in and out over a WebSocket, one per binary frame, with raw
//! frames for tests that send what no client would.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{ClientError, join};
use crate::protocol::{DecodeError, Message, decode, encode};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What arrived on a connection.
#[derive(Debug)]
pub enum Received {
    Message(Message),
    /// A binary frame that is not a protocol message.
    Undecodable(DecodeError),
    /// A text frame, which the protocol does not use.
    Text(String),
    /// The server closed the connection, with its close frame if it sent one.
    Closed(Option<CloseFrame>),
    /// The socket failed (`Some`) or ended without a close frame (`None`).
    Lost(Option<tungstenite::Error>),
    /// Nothing within the time given.
    Nothing,
}

/// A WebSocket to a sync server. Pings are answered and skipped while reading.
pub struct Connection {
    socket: Socket,
}

impl Connection {
    /// Opens the socket (the sync URL with its ticket, or a request with headers); nothing is
    /// sent yet.
    pub async fn connect<R>(request: R) -> Result<Connection, ClientError>
    where
        R: IntoClientRequest + Unpin,
    {
        // Nagle off, as browsers and Node do, so that small frames are not held back.
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
        Ok(Connection { socket })
    }

    /// Sends `join` as `peer_id` and returns the server's peer id from its `peer` answer.
    pub async fn join(&mut self, peer_id: &str, within: Duration) -> Result<String, ClientError> {
        self.send(&join(peer_id)).await?;
        match self.receive(within).await {
            Received::Message(Message::Peer { sender_id, .. }) => Ok(sender_id),
            other => Err(ClientError::NotJoined(format!("{other:?}"))),
        }
    }

    pub async fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        self.send_frame(binary(message)).await
    }

    /// Sends any frame, well-formed or not.
    pub async fn send_frame(&mut self, frame: Frame) -> Result<(), ClientError> {
        Ok(self.socket.send(frame).await?)
    }

    /// The next thing that arrives, however long that takes.
    pub async fn next(&mut self) -> Received {
        next(&mut self.socket).await
    }

    /// [`Self::next`] within one deadline, which the server's pings do not extend.
    pub async fn receive(&mut self, within: Duration) -> Received {
        tokio::time::timeout(within, self.next())
            .await
            .unwrap_or(Received::Nothing)
    }

    /// The next binary frame as it came, undecoded; `None` if something else came first or
    /// nothing within `within`.
    pub async fn receive_frame(&mut self, within: Duration) -> Option<Vec<u8>> {
        let frame = async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Frame::Binary(bytes))) => return Some(bytes.to_vec()),
                    Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                    _ => return None,
                }
            }
        };
        tokio::time::timeout(within, frame).await.ok().flatten()
    }

    /// Starts the closing handshake.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        Ok(self.socket.close(None).await?)
    }

    /// Separate halves, for a device that reads while another task writes.
    pub fn split(self) -> (Sender, Receiver) {
        let (sink, stream) = self.socket.split();
        (Sender { sink }, Receiver { stream })
    }
}

/// The writing half of a [`Connection`].
pub struct Sender {
    sink: SplitSink<Socket, Frame>,
}

impl Sender {
    pub async fn send(&mut self, message: &Message) -> Result<(), ClientError> {
        Ok(self.sink.send(binary(message)).await?)
    }

    /// Queues a message without flushing, to send several in one write.
    pub async fn feed(&mut self, message: &Message) -> Result<(), ClientError> {
        Ok(self.sink.feed(binary(message)).await?)
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        Ok(self.sink.flush().await?)
    }

    /// Starts the closing handshake.
    pub async fn close(&mut self) -> Result<(), ClientError> {
        Ok(self.sink.send(Frame::Close(None)).await?)
    }
}

/// The reading half of a [`Connection`].
pub struct Receiver {
    stream: SplitStream<Socket>,
}

impl Receiver {
    /// The next thing that arrives, however long that takes. Cancel-safe: a `select!` may drop it.
    pub async fn next(&mut self) -> Received {
        next(&mut self.stream).await
    }
}

fn binary(message: &Message) -> Frame {
    Frame::Binary(encode(message).into())
}

async fn next<S>(stream: &mut S) -> Received
where
    S: Stream<Item = Result<Frame, tungstenite::Error>> + Unpin,
{
    loop {
        return match stream.next().await {
            Some(Ok(Frame::Binary(bytes))) => match decode(&bytes) {
                Ok(message) => Received::Message(message),
                Err(e) => Received::Undecodable(e),
            },
            Some(Ok(Frame::Text(text))) => Received::Text(text.as_str().to_owned()),
            Some(Ok(Frame::Close(frame))) => Received::Closed(frame),
            // Pings are answered by the socket itself; raw frames only exist when writing.
            Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => continue,
            Some(Err(e)) => Received::Lost(Some(e)),
            None => Received::Lost(None),
        };
    }
}
