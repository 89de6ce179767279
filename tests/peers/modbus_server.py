#!/usr/bin/env python3
"""A Modbus server with a fixed register map, for Weir's end-to-end tests.

Runs pymodbus (an independent implementation of the protocol) over TCP or
RTU. The values below are what the tests expect to read; keep the two in step.

  modbus_server.py tcp 127.0.0.1:5020
  modbus_server.py rtu /tmp/ttyA 19200

Unit 1 holds every type in both word orders; unit 2 (TCP: another device
behind the same gateway; RTU: another device on the bus) holds one value.
Addresses outside a block answer with exception 02, illegal data address.
"""
import asyncio
import logging
import struct
import sys

from pymodbus import FramerType
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer


def words(fmt, value, little=False):
    """The 16-bit registers of `value` packed big-endian as `fmt`; `little` reverses their order."""
    raw = struct.pack(">" + fmt, value)
    w = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return w[::-1] if little else w


HOLDING_1 = (
    [65535]                                   # 0: u16
    + words("h", -2)                          # 1: i16
    + words("I", 65538)                       # 2-3: u32 big
    + words("i", -3, little=True)             # 4-5: i32 little
    + words("f", 21.5)                        # 6-7: f32 big
    + words("f", -0.25, little=True)          # 8-9: f32 little
    + words("Q", 1234567890123)               # 10-13: u64 big
    + words("d", 3.141592653589793)           # 14-17: f64 big
    + [250]                                   # 18: u16, read with scale 0.1 offset -5
    + words("q", -9876543210, little=True)    # 19-22: i64 little
)
INPUT_1 = [1000, 2000]
COILS_1 = [True, False, True, True]
DISCRETE_1 = [False, True]
HOLDING_2 = [42]


def block(values):
    # pymodbus' device context shifts requests by one (its datastore is
    # 1-based), so the block starts at 1 for address 0 to hold values[0].
    return ModbusSequentialDataBlock(1, list(values))


def context():
    unit1 = ModbusDeviceContext(
        hr=block(HOLDING_1), ir=block(INPUT_1), co=block(COILS_1), di=block(DISCRETE_1)
    )
    unit2 = ModbusDeviceContext(
        hr=block(HOLDING_2), ir=block([0]), co=block([False]), di=block([False])
    )
    return ModbusServerContext(devices={1: unit1, 2: unit2}, single=False)


async def main(argv):
    logging.basicConfig(level=logging.WARNING)
    mode = argv[1]
    if mode == "tcp":
        host, port = argv[2].rsplit(":", 1)
        await StartAsyncTcpServer(context=context(), address=(host, int(port)))
    elif mode == "rtu":
        await StartAsyncSerialServer(
            context=context(), framer=FramerType.RTU, port=argv[2], baudrate=int(argv[3])
        )
    else:
        sys.exit(f"unknown mode {mode!r}: expected tcp or rtu")


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
