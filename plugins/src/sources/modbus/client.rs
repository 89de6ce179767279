//! Connecting to a Modbus device (TCP or RTU, tokio-modbus) and making one
//! planned request, with its outcome sorted into what the source must do.

use std::time::Duration;

use tokio_modbus::client::{rtu, tcp, Client, Context};
use tokio_modbus::slave::{Slave, SlaveContext};
use tokio_modbus::{ExceptionCode, Response};

use super::config::{Endpoint, Kind};
use super::plan::Request;
use crate::sources::serial_port;

/// Connects (TCP: within `timeout`) or opens the serial port (RTU).
pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Context, String> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
                .await
                .map_err(|_| format!("no connection to {addr} within {timeout:?}"))?
                .map_err(|e| format!("{addr}: {e}"))?;
            // Requests are small and each waits for its answer.
            let _ = stream.set_nodelay(true);
            Ok(tcp::attach(stream))
        }
        Endpoint::Rtu { path, settings } => {
            let port = serial_port::open(path, settings).map_err(|e| format!("{path}: {e}"))?;
            Ok(rtu::attach(port))
        }
    }
}

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    /// Register values, `count` of them.
    Words(Vec<u16>),
    /// Bit values, `count` of them.
    Bits(Vec<bool>),
    /// The device answered with an exception: the connection is fine.
    Exception(ExceptionCode),
    /// No answer within the timeout.
    Timeout,
    /// The connection failed or the answer did not match the request: the
    /// connection is not to be trusted any more.
    Broken { reason: &'static str, error: String },
}

/// Makes `req` on `ctx`, waiting at most `timeout` for the answer.
pub async fn execute(ctx: &mut Context, req: &Request, timeout: Duration) -> Outcome {
    use tokio_modbus::Request as R;
    ctx.set_slave(Slave(req.unit));
    let call = match req.kind {
        Kind::Holding => R::ReadHoldingRegisters(req.address, req.count),
        Kind::Input => R::ReadInputRegisters(req.address, req.count),
        Kind::Coil => R::ReadCoils(req.address, req.count),
        Kind::Discrete => R::ReadDiscreteInputs(req.address, req.count),
    };
    let answer = match tokio::time::timeout(timeout, ctx.call(call)).await {
        Err(_elapsed) => return Outcome::Timeout,
        Ok(Err(tokio_modbus::Error::Transport(e))) => {
            return Outcome::Broken {
                reason: "transport",
                error: e.to_string(),
            }
        }
        Ok(Err(tokio_modbus::Error::Protocol(e))) => {
            return Outcome::Broken {
                reason: "protocol",
                error: e.to_string(),
            }
        }
        Ok(Ok(Err(code))) => return Outcome::Exception(code),
        Ok(Ok(Ok(answer))) => answer,
    };
    let n = usize::from(req.count);
    match answer {
        Response::ReadHoldingRegisters(w) | Response::ReadInputRegisters(w) if w.len() >= n => {
            Outcome::Words(w)
        }
        // Bits come in whole bytes; the padding is not ours.
        Response::ReadCoils(mut b) | Response::ReadDiscreteInputs(mut b) if b.len() >= n => {
            b.truncate(n);
            Outcome::Bits(b)
        }
        other => Outcome::Broken {
            reason: "protocol",
            error: format!("answer does not fit the request for {n} values: {other:?}"),
        },
    }
}

/// A short, stable name of an exception: metric label and log field.
pub fn exception_reason(code: ExceptionCode) -> &'static str {
    match code {
        ExceptionCode::IllegalFunction => "illegal_function",
        ExceptionCode::IllegalDataAddress => "illegal_data_address",
        ExceptionCode::IllegalDataValue => "illegal_data_value",
        ExceptionCode::ServerDeviceFailure => "server_device_failure",
        ExceptionCode::Acknowledge => "acknowledge",
        ExceptionCode::ServerDeviceBusy => "server_device_busy",
        ExceptionCode::MemoryParityError => "memory_parity_error",
        ExceptionCode::GatewayPathUnavailable => "gateway_path_unavailable",
        ExceptionCode::GatewayTargetDevice => "gateway_target_device",
        ExceptionCode::Custom(_) => "other_exception",
    }
}
