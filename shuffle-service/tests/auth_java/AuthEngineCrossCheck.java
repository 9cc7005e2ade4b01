// Drives Spark 3.5's own AuthEngine and CtrTransportCipher (spark-network-common, from
// pyspark's jars) for shuffle-service/tests/auth_engine_java.rs, one line per step on
// stdin/stdout, everything binary as hex.
//
//   java AuthEngineCrossCheck server <version> <secret-hex>
//     in:  <challenge>            out: "response <hex>" | "failed <exception class>"
//   java AuthEngineCrossCheck client <version> <secret-hex> <appId>
//     out: "challenge <hex>"      in:  <response>       out: "ready" | "failed <class>"
//   java AuthEngineCrossCheck ctr <key-hex> <inIv-hex> <outIv-hex>
//     a CtrTransportCipher with the given key and IVs, no handshake
//   java AuthEngineCrossCheck bench <seconds>
//     prints "handshake_us V" and "ctr_MiB_s SIZE V" like our auth_engine_bench example
//   then, on the channel the handshake (or the ctr arguments) keyed (a Netty EmbeddedChannel with Spark's cipher
//   handlers installed exactly as a real connection gets them):
//     in: "decrypt <hex>,<hex>,..."  (inbound TCP reads)    out: "plain <hex>"
//     in: "encrypt <hex>,<hex>,..."  (outbound messages)    out: "wire <hex>"
//     in: "quit"
//
// It sits in Spark's package because AuthEngine and AuthMessage are package-private.
package org.apache.spark.network.crypto;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.WritableByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.Properties;
import javax.crypto.spec.SecretKeySpec;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.FileRegion;
import io.netty.channel.embedded.EmbeddedChannel;

import org.apache.spark.network.util.MapConfigProvider;
import org.apache.spark.network.util.TransportConf;

public final class AuthEngineCrossCheck {
  private static final HexFormat HEX = HexFormat.of();

  public static void main(String[] args) throws Exception {
    String role = args[0];
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, "US-ASCII");
    if (role.equals("bench")) {
      bench(Double.parseDouble(args[1]));
      return;
    }
    if (role.equals("ctr")) {
      SecretKeySpec key = new SecretKeySpec(HEX.parseHex(args[1]), "AES");
      serve(new CtrTransportCipher(new Properties(), key, HEX.parseHex(args[2]),
          HEX.parseHex(args[3])), in, out);
      return;
    }
    Map<String, String> settings = new HashMap<>();
    settings.put("spark.network.crypto.authEngineVersion", args[1]);
    TransportConf conf = new TransportConf("shuffle", new MapConfigProvider(settings));
    String secret = new String(HEX.parseHex(args[2]), StandardCharsets.UTF_8);

    AuthEngine engine;
    if (role.equals("server")) {
      AuthMessage challenge = AuthMessage.decodeMessage(ByteBuffer.wrap(HEX.parseHex(in.readLine())));
      engine = new AuthEngine(challenge.appId, secret, conf);
      try {
        out.println("response " + HEX.formatHex(encode(engine.response(challenge))));
      } catch (Exception e) {
        out.println("failed " + e.getClass().getName());
        return;
      }
    } else {
      engine = new AuthEngine(args[3], secret, conf);
      AuthMessage challenge = engine.challenge();
      out.println("challenge " + HEX.formatHex(encode(challenge)));
      AuthMessage response = AuthMessage.decodeMessage(ByteBuffer.wrap(HEX.parseHex(in.readLine())));
      try {
        engine.deriveSessionCipher(challenge, response);
      } catch (Exception e) {
        out.println("failed " + e.getClass().getName());
        return;
      }
      out.println("ready");
    }

    serve(engine.sessionCipher(), in, out);
    engine.close();
  }

  private static void serve(TransportCipher cipher, BufferedReader in, PrintStream out)
      throws Exception {
    EmbeddedChannel channel = new EmbeddedChannel();
    cipher.addToChannel(channel);
    String line;
    while ((line = in.readLine()) != null) {
      String[] cmd = line.split(" ", 2);
      if (cmd[0].equals("quit")) {
        break;
      }
      ByteArrayOutputStream result = new ByteArrayOutputStream();
      if (cmd[0].equals("decrypt")) {
        for (String piece : cmd[1].split(",")) {
          channel.writeInbound(Unpooled.wrappedBuffer(HEX.parseHex(piece)));
          ByteBuf plain;
          while ((plain = channel.readInbound()) != null) {
            byte[] bytes = new byte[plain.readableBytes()];
            plain.readBytes(bytes);
            result.write(bytes);
            plain.release();
          }
        }
        out.println("plain " + HEX.formatHex(result.toByteArray()));
      } else if (cmd[0].equals("encrypt")) {
        WritableByteChannel wire = Channels.newChannel(result);
        for (String piece : cmd[1].split(",")) {
          channel.writeOutbound(Unpooled.wrappedBuffer(HEX.parseHex(piece)));
          Object sent;
          while ((sent = channel.readOutbound()) != null) {
            FileRegion region = (FileRegion) sent;
            while (region.transferred() < region.count()) {
              region.transferTo(wire, region.transferred());
            }
            region.release();
          }
        }
        out.println("wire " + HEX.formatHex(result.toByteArray()));
      } else {
        throw new IllegalArgumentException("unknown command " + cmd[0]);
      }
    }
    channel.finishAndReleaseAll();
  }

  /** The same measurements as our auth_engine_bench example, on Spark's classes. */
  private static void bench(double seconds) throws Exception {
    long budget = (long) (seconds * 1e9);
    String secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    TransportConf conf = new TransportConf("shuffle", new MapConfigProvider(new HashMap<>()));
    byte[][] challenges = new byte[64][];
    for (int i = 0; i < challenges.length; i++) {
      try (AuthEngine client = new AuthEngine(String.format("app-20261203-%04d", i), secret, conf)) {
        challenges[i] = encode(client.challenge());
      }
    }
    // Warm-up (JIT), then the measured loop: what the server does per new connection.
    for (int round = 0; round < 2; round++) {
      long n = 0;
      long start = System.nanoTime();
      while (System.nanoTime() - start < (round == 0 ? budget / 2 : budget)) {
        AuthMessage challenge =
            AuthMessage.decodeMessage(ByteBuffer.wrap(challenges[(int) (n % challenges.length)]));
        try (AuthEngine engine = new AuthEngine(challenge.appId, secret, conf)) {
          byte[] response = encode(engine.response(challenge));
          EmbeddedChannel channel = new EmbeddedChannel();
          engine.sessionCipher().addToChannel(channel);
          channel.finishAndReleaseAll();
          if (response.length == 0) {
            throw new IllegalStateException();
          }
        }
        n++;
      }
      if (round == 1) {
        System.out.printf("handshake_us %.1f%n", (System.nanoTime() - start) / 1e3 / n);
      }
    }
    // CTR through Spark's encryption handler, as the ESS writes chunk bodies.
    AuthMessage challenge = AuthMessage.decodeMessage(ByteBuffer.wrap(challenges[0]));
    AuthEngine engine = new AuthEngine(challenge.appId, secret, conf);
    engine.response(challenge);
    WritableByteChannel sink = new WritableByteChannel() {
      public int write(ByteBuffer src) {
        int n = src.remaining();
        src.position(src.limit());
        return n;
      }
      public boolean isOpen() {
        return true;
      }
      public void close() {}
    };
    for (int size : new int[] {1 << 20, 32 << 10}) {
      EmbeddedChannel channel = new EmbeddedChannel();
      engine.sessionCipher().addToChannel(channel);
      byte[] data = new byte[size];
      java.util.Arrays.fill(data, (byte) 0x5a);
      for (int round = 0; round < 2; round++) {
        long bytes = 0;
        long start = System.nanoTime();
        while (System.nanoTime() - start < (round == 0 ? budget / 2 : budget)) {
          channel.writeOutbound(Unpooled.wrappedBuffer(data));
          Object sent;
          while ((sent = channel.readOutbound()) != null) {
            FileRegion region = (FileRegion) sent;
            while (region.transferred() < region.count()) {
              region.transferTo(sink, region.transferred());
            }
            region.release();
          }
          bytes += size;
        }
        if (round == 1) {
          double mibs = bytes / 1048576.0 / ((System.nanoTime() - start) / 1e9);
          System.out.printf("ctr_MiB_s %d %.0f%n", size, mibs);
        }
      }
      channel.finishAndReleaseAll();
    }
    engine.close();
  }

  private static byte[] encode(AuthMessage msg) {
    ByteBuf buf = Unpooled.buffer(msg.encodedLength());
    msg.encode(buf);
    byte[] bytes = new byte[buf.readableBytes()];
    buf.readBytes(bytes);
    return bytes;
  }
}
