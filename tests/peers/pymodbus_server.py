#!/usr/bin/python3
"""A Modbus TCP server that no one on this project wrote: Debian's python3-pymodbus (3.0.x),
serving register blocks whose values tests/modbus_peers.rs knows.

    /usr/bin/python3 tests/peers/pymodbus_server.py PORT

Run it with Debian's /usr/bin/python3 (the package installs into its dist-packages, not into
a pyenv or venv python3). It listens on 127.0.0.1:PORT and prints, flushed, one line per event
on stdout (the test reads them):

    READY 127.0.0.1:PORT pymodbus=VERSION    once the socket listens
    CONNECTED host:port / DISCONNECTED host:port    a client connection opened / closed
    WRITE unit=U table=T address=A values=V1,V2,...    a client wrote (protocol address)

It exits when its stdin reaches end of file, so a test that dies without killing it does not
leave it behind (the test keeps a pipe to its stdin open).

Values are encoded here with `struct`, independently of the gateway's decoder. Byte order names
as in the gateway's README: A is the most significant byte of the big-endian value; ABCD is
big-endian, CDAB word-swapped, BADC byte-swapped inside each word, DCBA little-endian; 64-bit
values extend the pattern (CDAB = GHEFCDAB, words reversed).

pymodbus quirks met on the way (3.0.0, Debian 12):
- Address shift: with the default `zero_mode=False` of ModbusSlaveContext, protocol address N
  is looked up at data-block address N + 1 (the "Modicon" register number), so a block made
  as ModbusSequentialDataBlock(0, values) answers a read of address 0 with values[1]. This
  script makes every block with ModbusSequentialDataBlock(1, values): values[i] is protocol
  address i. The test's exact decoding checks this (an off-by-one shows as wrong values).
- Unknown unit ids: with several unit contexts (single=False) a request to a unit id that has
  none is silently dropped by the framer (the client times out), not answered with exception
  0x0B as `ignore_missing_slaves=False` suggests.
- Exceptions: a read past the end of a block is answered with 0x02 (illegal data address); a
  response can be replaced with `response_manipulator`, which is how unit 4 answers 0x06
  (server device busy) to everything.
- Binding: ModbusTcpServer passes `reuse_address=False` to asyncio unless told otherwise, so
  the port cannot be bound while an earlier connection to it is in TIME_WAIT (the tests take
  free ports that other services may have used a minute ago): `allow_reuse_address=True`.
- `pymodbus.__version__` of Debian's 3.0.0 package says `3.0.0.rc1`.
- The package only recommends python3-serial-asyncio, yet `pymodbus.server` and
  `pymodbus.client` import it: with --no-install-recommends they fail to import without it.
"""

import asyncio
import logging
import os
import struct
import sys
import threading

try:
    import pymodbus
    from pymodbus.datastore import (
        ModbusSequentialDataBlock,
        ModbusServerContext,
        ModbusSlaveContext,
    )
    from pymodbus.pdu import ExceptionResponse, ModbusExceptions
    from pymodbus.server import StartAsyncTcpServer
    from pymodbus.server.async_io import ModbusConnectedRequestHandler
except ImportError as exc:  # pragma: no cover
    print(
        f"pymodbus is missing ({exc}): run scripts/install-test-deps "
        "(apt-get install python3-pymodbus python3-serial-asyncio) and use /usr/bin/python3",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)


# --------------------------------------------------------------------------------------------
# Encoding: value -> big-endian bytes -> wire words in the given order.
# --------------------------------------------------------------------------------------------

def words(fmt, value, order="ABCD"):
    """The wire words of `value` packed big-endian with struct format `fmt`, in `order`."""
    raw = struct.pack(">" + fmt, value)
    if len(raw) == 2:
        return [struct.unpack(">H", raw)[0]]
    ws = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if order in ("BADC", "DCBA"):
        ws = [w[::-1] for w in ws]
    if order in ("CDAB", "DCBA"):
        ws = ws[::-1]
    return [struct.unpack(">H", w)[0] for w in ws]


def text_words(text, registers, order="ABCD", pad=b"\0"):
    """`text` (ASCII) in `registers` registers, padded with `pad`: ABCD puts the first character
    in the high byte of the first register, BADC in its low byte."""
    raw = text.encode("ascii").ljust(2 * registers, pad)
    assert len(raw) == 2 * registers
    ws = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if order == "BADC":
        ws = [w[::-1] for w in ws]
    return [struct.unpack(">H", w)[0] for w in ws]


assert text_words("FW", 2) == [0x4657, 0x0000]
assert text_words("FW", 2, "BADC", b" ") == [0x5746, 0x2020]

# The README's worked example: 25.0 as f32 in the four orders.
assert words("f", 25.0, "ABCD") == [0x41C8, 0x0000]
assert words("f", 25.0, "CDAB") == [0x0000, 0x41C8]
assert words("f", 25.0, "BADC") == [0xC841, 0x0000]
assert words("f", 25.0, "DCBA") == [0x0000, 0xC841]
assert words("f", 123.456, "BADC") == [0xF642, 0x79E9]
assert words("i", -100000, "CDAB") == [0x7960, 0xFFFE]
assert words("Q", 0x0102030405060708, "CDAB") == [0x0708, 0x0506, 0x0304, 0x0102]
assert words("Q", 0x0102030405060708, "BADC") == [0x0201, 0x0403, 0x0605, 0x0807]


# --------------------------------------------------------------------------------------------
# Unit 1: every type and order (model `modbus_types` of the test). Protocol addresses.
# --------------------------------------------------------------------------------------------

HOLDING_1 = {
    0: words("f", 55.25, "ABCD"),
    2: words("f", -12.5, "CDAB"),
    4: words("f", 25.0, "BADC"),
    6: words("f", -1234.5678, "DCBA"),
    8: words("f", 123.456, "ABCD"),   # 0x42F6E979: four different non-zero bytes
    10: words("f", 123.456, "CDAB"),
    12: words("f", 123.456, "BADC"),
    14: words("f", 123.456, "DCBA"),
    16: words("h", -2),
    17: words("h", -32768),
    18: words("i", -100000, "ABCD"),
    20: words("i", -100000, "CDAB"),
    22: words("i", -123456789, "BADC"),
    24: words("i", -123456789, "DCBA"),
    26: words("H", 65535),
    27: words("I", 4000000000, "ABCD"),
    29: words("I", 3000000001, "CDAB"),
    31: [0xA005],                      # status word: bits 0, 2, 13 and 15 set
    32: words("H", 653),               # × 0.1 − 40 → 25.3 °C
    33: words("h", -125),              # × 0.01 → −1.25
    34: words("H", 2),                 # enum index 2 → "off"
    35: words("d", -0.1, "ABCD"),
    39: words("d", 12345.678901234, "CDAB"),
    43: words("q", -9000000000123, "ABCD"),
    47: words("Q", 1234567890123456789, "DCBA"),
    51: [7],                           # bool in a register: non-zero → true
    # Issue 17: strings and the int64/uint64 names; a value stored by exception only.
    52: text_words("FW 2.1.7", 6),                       # NUL-padded, ABCD
    58: text_words("  HX-PLC-7", 6, "BADC", b" "),       # space-padded both sides, BADC
    64: words("q", -1234567890123456, "CDAB"),           # type = "int64"
    68: words("Q", 9000000000000000001, "ABCD"),         # type = "uint64"
    72: words("f", 21.5, "ABCD"),                        # max_silence = "1h"
}
INPUT_1 = {
    0: words("f", -12.5, "CDAB"),
    2: words("h", -2),
    3: words("I", 123456, "BADC"),
}
COILS_1 = {0: True, 1: False, 2: True, 17: True}
DISCRETE_1 = {0: False, 1: True, 9: True}


# --------------------------------------------------------------------------------------------
# Unit 2: the built-in `heating_plc` model (configs/models/heating_plc.toml).
# --------------------------------------------------------------------------------------------

HOLDING_2 = {
    0: words("f", 55.5, "ABCD"),       # supply_temp_c
    2: words("f", 41.25, "ABCD"),      # return_temp_c
    4: words("H", 420),                # pressure_mpa, × 0.001
    6: words("f", 12.75, "CDAB"),      # flow_m3h, word-swapped
    10: [0x0001],                      # pump_running = bit 0
    11: words("H", 3),                 # fault_code
    12: words("f", 50.0, "ABCD"),      # supply_setpoint_c (writable)
}


def register_block(values_at, size):
    """A holding or input register block of `size` registers (protocol addresses 0..size-1)."""
    regs = [0] * size
    for address, ws in values_at.items():
        regs[address:address + len(ws)] = ws
    # Block address 1 = protocol address 0 (zero_mode=False shifts every request by +1).
    return ModbusSequentialDataBlock(1, regs)


def bit_block(values_at, size):
    bits = [False] * size
    for address, b in values_at.items():
        bits[address] = b
    return ModbusSequentialDataBlock(1, bits)


TABLES = {1: "coil", 2: "discrete", 3: "holding", 4: "input",
          5: "coil", 6: "holding", 15: "coil", 16: "holding"}


class LoggingSlaveContext(ModbusSlaveContext):
    """A unit's tables; prints every write with the protocol address the client sent."""

    def __init__(self, unit, **kwargs):
        super().__init__(**kwargs)
        self.unit = unit

    def setValues(self, fc_as_hex, address, values):  # noqa: N802 (pymodbus's name)
        table = TABLES.get(fc_as_hex, f"fc{fc_as_hex}")
        shown = ",".join(str(int(v)) for v in values)
        print(f"WRITE unit={self.unit} table={table} address={address} values={shown}",
              flush=True)
        super().setValues(fc_as_hex, address, values)


class LoggingHandler(ModbusConnectedRequestHandler):
    """Prints each client connection opening and closing."""

    def connection_made(self, transport):
        peer = transport.get_extra_info("peername")
        print(f"CONNECTED {peer[0]}:{peer[1]}", flush=True)
        super().connection_made(transport)

    def connection_lost(self, call_exc):
        peer = getattr(self, "client_address", ("?", "?"))
        print(f"DISCONNECTED {peer[0]}:{peer[1]}", flush=True)
        super().connection_lost(call_exc)


BUSY_UNIT = 4


def busy_unit(response):
    """Unit 4 answers every request with exception 0x06 (server device busy)."""
    if getattr(response, "unit_id", None) == BUSY_UNIT:
        busy = ExceptionResponse(response.function_code & 0x7F, ModbusExceptions.SlaveBusy)
        busy.transaction_id = response.transaction_id
        busy.unit_id = response.unit_id
        return busy, False
    return response, False


def context():
    size = 80  # holding and input registers per unit; reading past it is exception 0x02
    types = LoggingSlaveContext(
        1,
        hr=register_block(HOLDING_1, size),
        ir=register_block(INPUT_1, size),
        co=bit_block(COILS_1, 24),
        di=bit_block(DISCRETE_1, 24),
    )
    plc = LoggingSlaveContext(
        2,
        hr=register_block(HOLDING_2, size),
        ir=register_block({}, size),
        co=bit_block({}, 24),
        di=bit_block({}, 24),
    )
    # Unit 3 shares unit 1's values (the exceptions test reads past them); unit 4 is busy.
    busy = LoggingSlaveContext(
        BUSY_UNIT,
        hr=register_block({}, size),
        ir=register_block({}, size),
        co=bit_block({}, 24),
        di=bit_block({}, 24),
    )
    return ModbusServerContext(slaves={1: types, 2: plc, 3: types, BUSY_UNIT: busy},
                               single=False)


def exit_on_stdin_eof():
    """The parent (the test) holds our stdin: end of file means it is gone."""
    # The raw fd, not sys.stdin: a thread blocked in a buffered read holds its lock and makes
    # an interpreter that exits for another reason abort ("could not acquire lock").
    try:
        while os.read(0, 4096):
            pass
    finally:
        os._exit(0)


async def main(port):
    server = await StartAsyncTcpServer(
        context=context(),
        address=("127.0.0.1", port),
        defer_start=True,
        # pymodbus binds without SO_REUSEADDR by default: the bind then fails while an earlier
        # connection to this port (another test's service, a run before) is in TIME_WAIT.
        allow_reuse_address=True,
        handler=LoggingHandler,
        response_manipulator=busy_unit,
    )
    task = asyncio.create_task(server.serve_forever())
    serving = asyncio.ensure_future(server.serving)
    done, _ = await asyncio.wait({task, serving}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:  # bind failed: serve_forever raised before `serving` was set
        task.result()
        raise SystemExit(f"server stopped before listening on 127.0.0.1:{port}")
    print(f"READY 127.0.0.1:{port} pymodbus={pymodbus.__version__}", flush=True)
    await task


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: /usr/bin/python3 {sys.argv[0]} PORT")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threading.Thread(target=exit_on_stdin_eof, daemon=True).start()
    asyncio.run(main(int(sys.argv[1])))
