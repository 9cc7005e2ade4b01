// Cross-check of croupier-proto's encodings against the official Mesos Java classes
// (org.apache.mesos.v1.* in mesos-1.4.3-shaded-protobuf.jar, shaded protobuf under
// org.apache.mesos.protobuf). Driven by tests/tests/proto_java_crosscheck.rs:
//
//   java CrossCheck descriptors          dump every message field and enum value of mesos.v1
//                                        and mesos.v1.executor as tab-separated lines
//   java CrossCheck parse-call FILE      parse FILE as a Call; print initialized/unknown state
//                                        and the text format
//   java CrossCheck encode-events DIR    write Events built here into DIR/<name>.bin

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.Map;

import org.apache.mesos.protobuf.ByteString;
import org.apache.mesos.protobuf.Descriptors;
import org.apache.mesos.protobuf.Message;
import org.apache.mesos.protobuf.TextFormat;
import org.apache.mesos.protobuf.UnknownFieldSet;

public class CrossCheck {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: CrossCheck descriptors | parse-call FILE | encode-events DIR");
            System.exit(2);
        }
        switch (args[0]) {
            case "descriptors":
                dump(org.apache.mesos.v1.Protos.getDescriptor());
                dump(org.apache.mesos.v1.executor.Protos.getDescriptor());
                break;
            case "parse-call":
                parseCall(Paths.get(args[1]));
                break;
            case "encode-events":
                encodeEvents(Paths.get(args[1]));
                break;
            default:
                System.err.println("unknown mode " + args[0]);
                System.exit(2);
        }
    }

    // ---- descriptors ---------------------------------------------------------------------------

    static void dump(Descriptors.FileDescriptor file) {
        for (Descriptors.Descriptor m : file.getMessageTypes()) {
            dumpMessage(m);
        }
        for (Descriptors.EnumDescriptor e : file.getEnumTypes()) {
            dumpEnum(e);
        }
    }

    static void dumpMessage(Descriptors.Descriptor m) {
        System.out.println("M\t" + m.getFullName());
        for (Descriptors.FieldDescriptor f : m.getFields()) {
            String label = f.isRequired() ? "required" : f.isRepeated() ? "repeated" : "optional";
            String typeName = "-";
            if (f.getJavaType() == Descriptors.FieldDescriptor.JavaType.MESSAGE) {
                typeName = f.getMessageType().getFullName();
            } else if (f.getJavaType() == Descriptors.FieldDescriptor.JavaType.ENUM) {
                typeName = f.getEnumType().getFullName();
            }
            String def = "-";
            if (f.hasDefaultValue()) {
                Object v = f.getDefaultValue();
                def = (v instanceof Descriptors.EnumValueDescriptor)
                        ? ((Descriptors.EnumValueDescriptor) v).getName()
                        : String.valueOf(v);
            }
            System.out.println("F\t" + m.getFullName() + "\t" + f.getName() + "\t" + f.getNumber()
                    + "\t" + label + "\t" + f.getType() + "\t" + typeName + "\t" + def);
        }
        for (Descriptors.Descriptor n : m.getNestedTypes()) {
            dumpMessage(n);
        }
        for (Descriptors.EnumDescriptor e : m.getEnumTypes()) {
            dumpEnum(e);
        }
    }

    static void dumpEnum(Descriptors.EnumDescriptor e) {
        for (Descriptors.EnumValueDescriptor v : e.getValues()) {
            System.out.println("E\t" + e.getFullName() + "\t" + v.getName() + "\t" + v.getNumber());
        }
    }

    // ---- calls (Rust -> Java) ------------------------------------------------------------------

    static void parseCall(Path file) throws Exception {
        byte[] bytes = Files.readAllBytes(file);
        // parsePartialFrom: report missing required fields ourselves instead of throwing.
        org.apache.mesos.v1.executor.Protos.Call call =
                org.apache.mesos.v1.executor.Protos.Call.PARSER.parsePartialFrom(bytes);
        System.out.println("initialized=" + call.isInitialized());
        System.out.println("unknown_fields=" + countUnknown(call));
        System.out.println("reencoded_equal=" + java.util.Arrays.equals(bytes, call.toByteArray()));
        if (call.hasUpdate() && call.getUpdate().getStatus().hasUuid()) {
            System.out.println("uuid_len=" + call.getUpdate().getStatus().getUuid().size());
        }
        System.out.print(TextFormat.printToString(call));
    }

    static int countUnknown(Message m) {
        int n = m.getUnknownFields().asMap().size();
        for (Map.Entry<Descriptors.FieldDescriptor, Object> e : m.getAllFields().entrySet()) {
            if (e.getKey().getJavaType() != Descriptors.FieldDescriptor.JavaType.MESSAGE) {
                continue;
            }
            if (e.getKey().isRepeated()) {
                for (Object o : (List<?>) e.getValue()) {
                    n += countUnknown((Message) o);
                }
            } else {
                n += countUnknown((Message) e.getValue());
            }
        }
        return n;
    }

    // ---- events (Java -> Rust) -----------------------------------------------------------------

    static void encodeEvents(Path dir) throws Exception {
        Files.createDirectories(dir);
        org.apache.mesos.v1.Protos.FrameworkID fid =
                org.apache.mesos.v1.Protos.FrameworkID.newBuilder().setValue("fw-1").build();
        org.apache.mesos.v1.Protos.ExecutorID eid =
                org.apache.mesos.v1.Protos.ExecutorID.newBuilder().setValue("exec-1").build();
        org.apache.mesos.v1.Protos.AgentID aid =
                org.apache.mesos.v1.Protos.AgentID.newBuilder().setValue("agent-1").build();

        org.apache.mesos.v1.Protos.CommandInfo command = org.apache.mesos.v1.Protos.CommandInfo.newBuilder()
                .addUris(org.apache.mesos.v1.Protos.CommandInfo.URI.newBuilder()
                        .setValue("http://example.invalid/app.tgz")
                        .setExecutable(false)
                        .setExtract(true)
                        .setCache(true)
                        .setOutputFile("app.tgz"))
                .setEnvironment(org.apache.mesos.v1.Protos.Environment.newBuilder()
                        .addVariables(org.apache.mesos.v1.Protos.Environment.Variable.newBuilder()
                                .setName("GREETING")
                                .setType(org.apache.mesos.v1.Protos.Environment.Variable.Type.VALUE)
                                .setValue("hello")))
                .setShell(false)
                .setValue("/bin/echo")
                .addArguments("echo")
                .addArguments("hi")
                .setUser("nobody")
                .build();

        org.apache.mesos.v1.Protos.TaskInfo task = org.apache.mesos.v1.Protos.TaskInfo.newBuilder()
                .setName("task one")
                .setTaskId(org.apache.mesos.v1.Protos.TaskID.newBuilder().setValue("task-1"))
                .setAgentId(aid)
                .addResources(org.apache.mesos.v1.Protos.Resource.newBuilder()
                        .setName("cpus")
                        .setType(org.apache.mesos.v1.Protos.Value.Type.SCALAR)
                        .setScalar(org.apache.mesos.v1.Protos.Value.Scalar.newBuilder().setValue(0.5))
                        .setRole("*"))
                .addResources(org.apache.mesos.v1.Protos.Resource.newBuilder()
                        .setName("ports")
                        .setType(org.apache.mesos.v1.Protos.Value.Type.RANGES)
                        .setRanges(org.apache.mesos.v1.Protos.Value.Ranges.newBuilder()
                                .addRange(org.apache.mesos.v1.Protos.Value.Range.newBuilder()
                                        .setBegin(31000).setEnd(31010))))
                .setCommand(command)
                .setData(ByteString.copyFrom(new byte[] {0, 1, 2, (byte) 0xff}))
                .setKillPolicy(org.apache.mesos.v1.Protos.KillPolicy.newBuilder()
                        .setGracePeriod(org.apache.mesos.v1.Protos.DurationInfo.newBuilder()
                                .setNanoseconds(7_000_000_000L)))
                .setLabels(org.apache.mesos.v1.Protos.Labels.newBuilder()
                        .addLabels(org.apache.mesos.v1.Protos.Label.newBuilder().setKey("k").setValue("v")))
                .build();

        org.apache.mesos.v1.Protos.ExecutorInfo executor = org.apache.mesos.v1.Protos.ExecutorInfo.newBuilder()
                .setType(org.apache.mesos.v1.Protos.ExecutorInfo.Type.CUSTOM)
                .setExecutorId(eid)
                .setFrameworkId(fid)
                .setCommand(org.apache.mesos.v1.Protos.CommandInfo.newBuilder()
                        .setValue("/usr/bin/croupier-executor").setShell(false)
                        .addArguments("croupier-executor"))
                .setName("croupier")
                .setShutdownGracePeriod(org.apache.mesos.v1.Protos.DurationInfo.newBuilder()
                        .setNanoseconds(5_000_000_000L))
                .build();

        org.apache.mesos.v1.executor.Protos.Event subscribed = org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.SUBSCRIBED)
                .setSubscribed(org.apache.mesos.v1.executor.Protos.Event.Subscribed.newBuilder()
                        .setExecutorInfo(executor)
                        .setFrameworkInfo(org.apache.mesos.v1.Protos.FrameworkInfo.newBuilder()
                                .setUser("root")
                                .setName("spark")
                                .setId(fid)
                                .setCheckpoint(true)
                                .addCapabilities(org.apache.mesos.v1.Protos.FrameworkInfo.Capability.newBuilder()
                                        .setType(org.apache.mesos.v1.Protos.FrameworkInfo.Capability.Type.TASK_KILLING_STATE)))
                        .setAgentInfo(org.apache.mesos.v1.Protos.AgentInfo.newBuilder()
                                .setHostname("agent.example")
                                .setPort(5051)
                                .setId(aid))
                        .setContainerId(org.apache.mesos.v1.Protos.ContainerID.newBuilder()
                                .setValue("container-1")
                                .setParent(org.apache.mesos.v1.Protos.ContainerID.newBuilder().setValue("parent-1"))))
                .build();
        write(dir, "subscribed", subscribed);

        write(dir, "launch", org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.LAUNCH)
                .setLaunch(org.apache.mesos.v1.executor.Protos.Event.Launch.newBuilder().setTask(task))
                .build());

        write(dir, "launch_group", org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.LAUNCH_GROUP)
                .setLaunchGroup(org.apache.mesos.v1.executor.Protos.Event.LaunchGroup.newBuilder()
                        .setTaskGroup(org.apache.mesos.v1.Protos.TaskGroupInfo.newBuilder()
                                .addTasks(task)
                                .addTasks(task.toBuilder()
                                        .setTaskId(org.apache.mesos.v1.Protos.TaskID.newBuilder().setValue("task-2")))))
                .build());

        write(dir, "kill", org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.KILL)
                .setKill(org.apache.mesos.v1.executor.Protos.Event.Kill.newBuilder()
                        .setTaskId(org.apache.mesos.v1.Protos.TaskID.newBuilder().setValue("task-1"))
                        .setKillPolicy(org.apache.mesos.v1.Protos.KillPolicy.newBuilder()
                                .setGracePeriod(org.apache.mesos.v1.Protos.DurationInfo.newBuilder()
                                        .setNanoseconds(1_500_000_000L))))
                .build());

        byte[] uuid = new byte[16];
        for (int i = 0; i < 16; i++) {
            uuid[i] = (byte) (i * 17);
        }
        write(dir, "acknowledged", org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.ACKNOWLEDGED)
                .setAcknowledged(org.apache.mesos.v1.executor.Protos.Event.Acknowledged.newBuilder()
                        .setTaskId(org.apache.mesos.v1.Protos.TaskID.newBuilder().setValue("task-1"))
                        .setUuid(ByteString.copyFrom(uuid)))
                .build());

        write(dir, "message", org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.MESSAGE)
                .setMessage(org.apache.mesos.v1.executor.Protos.Event.Message.newBuilder()
                        .setData(ByteString.copyFromUtf8("framework says hi")))
                .build());

        write(dir, "error", org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.ERROR)
                .setError(org.apache.mesos.v1.executor.Protos.Event.Error.newBuilder().setMessage("boom"))
                .build());

        write(dir, "shutdown", org.apache.mesos.v1.executor.Protos.Event.newBuilder()
                .setType(org.apache.mesos.v1.executor.Protos.Event.Type.SHUTDOWN)
                .build());
    }

    static void write(Path dir, String name, Message m) throws Exception {
        Files.write(dir.resolve(name + ".bin"), m.toByteArray());
    }
}
