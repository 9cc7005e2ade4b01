// Our own cross-check of the scripted HDFS peer (../hdfs_fake.rs) with Hadoop's official client
// (hadoop-client-api/-runtime 3.3.4 as shipped in pyspark's jars/). Run by
// executor/tests/fetcher_hdfs.rs; it talks only to the NameNode URI it is given.
//
// Usage: HdfsCrossCheck <hdfs://127.0.0.1:port | hdfs://nameservice> <file> <out> <pread-offset>
//        <pread-len> <pread-out> <missing> [key=value...]
// Each key=value is set in the client's Configuration last (e.g. an HA nameservice's keys).
// Prints one "key value..." line per check on stdout; any unexpected outcome exits non-zero.

import java.io.FileNotFoundException;
import java.io.FileOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

public final class HdfsCrossCheck {
    public static void main(String[] args) throws Exception {
        if (args.length < 7) {
            System.err.println("usage: HdfsCrossCheck <nn-uri> <file> <out> <pread-offset> <pread-len> <pread-out> <missing> [key=value...]");
            System.exit(2);
        }
        String nn = args[0];
        Path file = new Path(args[1]);
        String out = args[2];
        long preadOffset = Long.parseLong(args[3]);
        int preadLen = Integer.parseInt(args[4]);
        String preadOut = args[5];
        Path missing = new Path(args[6]);

        Configuration conf = new Configuration();
        // Only the NameNode we were given; nothing from the environment.
        conf.set("fs.defaultFS", nn);
        conf.set("hadoop.security.authentication", "simple");
        conf.setBoolean("fs.hdfs.impl.disable.cache", true);
        // Reach DataNodes by the IP the NameNode reports (127.0.0.1), never by host name.
        conf.setBoolean("dfs.client.use.datanode.hostname", false);
        conf.setBoolean("dfs.client.read.shortcircuit", false);
        conf.set("dfs.domain.socket.path", "");
        // Fail fast instead of Hadoop's long retry loops.
        conf.setInt("ipc.client.connect.max.retries", 0);
        conf.setInt("ipc.client.connect.max.retries.on.timeouts", 0);
        conf.setInt("ipc.client.connect.timeout", 5000);
        conf.setInt("ipc.client.rpc-timeout.ms", 20000);
        conf.setBoolean("dfs.client.retry.policy.enabled", false);
        conf.setInt("dfs.client.socket-timeout", 20000);
        conf.setInt("dfs.client.max.block.acquire.failures", 0);
        conf.setInt("dfs.client.retry.window.base", 1);
        for (int i = 7; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("not key=value: " + args[i]);
                System.exit(2);
            }
            conf.set(args[i].substring(0, eq), args[i].substring(eq + 1));
        }

        FileSystem fs = FileSystem.get(new URI(nn), conf);
        System.out.println("filesystem " + fs.getClass().getName());

        FileStatus st = fs.getFileStatus(file);
        System.out.println("status length=" + st.getLen() + " isFile=" + st.isFile()
                + " blockSize=" + st.getBlockSize() + " replication=" + st.getReplication()
                + " owner=" + st.getOwner() + " group=" + st.getGroup()
                + " permission=" + st.getPermission() + " path=" + st.getPath().toUri().getPath());

        FileStatus dir = fs.getFileStatus(file.getParent());
        System.out.println("dir-status isDirectory=" + dir.isDirectory()
                + " permission=" + dir.getPermission() + " path=" + dir.getPath().toUri().getPath());

        long total = 0;
        try (FSDataInputStream in = fs.open(file); OutputStream o = new FileOutputStream(out)) {
            byte[] buf = new byte[8192];
            int n;
            while ((n = in.read(buf)) > 0) {
                o.write(buf, 0, n);
                total += n;
            }
        }
        System.out.println("read bytes=" + total);

        // A positional read starting inside a checksum chunk and crossing a block boundary.
        byte[] part = new byte[preadLen];
        try (FSDataInputStream in = fs.open(file)) {
            in.readFully(preadOffset, part);
        }
        try (OutputStream o = new FileOutputStream(preadOut)) {
            o.write(part);
        }
        System.out.println("pread offset=" + preadOffset + " bytes=" + preadLen);

        try {
            fs.getFileStatus(missing);
            System.out.println("missing-status found");
            System.exit(1);
        } catch (FileNotFoundException e) {
            System.out.println("missing-status FileNotFoundException " + e.getMessage());
        }
        try (InputStream in = fs.open(missing)) {
            System.out.println("missing-open opened");
            System.exit(1);
        } catch (FileNotFoundException e) {
            System.out.println("missing-open FileNotFoundException " + oneLine(e.getMessage()));
        }
        fs.close();
        System.out.println("done");
    }

    private static String oneLine(String s) {
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }
}
