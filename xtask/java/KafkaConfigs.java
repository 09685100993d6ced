// Prints, as JSON on stdout, every broker config and every topic config that
// Apache Kafka defines (the ConfigDefs of AbstractKafkaConfig and LogConfig),
// with type, default, validator, importance, documentation and the dynamic
// update mode. Run by `cargo xtask codegen` against the pinned Kafka jars;
// its output is turned into crates/broker/src/config/kafka_generated.rs.

import java.lang.reflect.Field;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.common.config.ConfigDef.ConfigKey;
import org.apache.kafka.server.config.AbstractKafkaConfig;
import org.apache.kafka.server.config.DynamicBrokerConfig;
import org.apache.kafka.server.config.ServerTopicConfigSynonyms;
import org.apache.kafka.storage.internals.log.LogConfig;

public final class KafkaConfigs {
    private KafkaConfigs() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> modes = DynamicBrokerConfig.dynamicConfigUpdateModes();
        StringBuilder out = new StringBuilder();
        out.append("{\n\"broker\": [\n");
        writeKeys(out, new TreeMap<>(AbstractKafkaConfig.CONFIG_DEF.configKeys()), modes, null);
        out.append("],\n\"topic\": [\n");
        writeKeys(out, new TreeMap<>(LogConfig.configKeys()), null, ServerTopicConfigSynonyms.TOPIC_CONFIG_SYNONYMS);
        out.append("]\n}\n");
        System.out.print(out);
    }

    private static void writeKeys(StringBuilder out, Map<String, ConfigKey> keys, Map<String, String> modes,
                                  Map<String, String> synonyms) throws Exception {
        boolean first = true;
        for (ConfigKey k : keys.values()) {
            if (!first) out.append(",\n");
            first = false;
            out.append("{");
            field(out, "name", k.name);
            out.append(',');
            field(out, "type", k.type.name());
            out.append(',');
            if (k.hasDefault()) {
                field(out, "default", k.defaultValue == null ? null : ConfigDef.convertToString(k.defaultValue, k.type));
            } else {
                out.append("\"default\":null,\"required\":true");
            }
            out.append(',');
            field(out, "importance", k.importance.name());
            out.append(',');
            field(out, "documentation", k.documentation == null ? "" : k.documentation);
            out.append(",\"internal\":").append(k.internalConfig);
            if (modes != null) {
                out.append(',');
                field(out, "dynamic", modes.getOrDefault(k.name, "read-only"));
            }
            if (synonyms != null) {
                out.append(',');
                field(out, "broker_name", synonyms.get(k.name));
            }
            out.append(",\"validator\":");
            validator(out, k.validator);
            out.append("}");
        }
        out.append('\n');
    }

    private static Object get(Object o, String name) throws Exception {
        Class<?> c = o.getClass();
        while (c != null) {
            try {
                Field f = c.getDeclaredField(name);
                f.setAccessible(true);
                return f.get(o);
            } catch (NoSuchFieldException e) {
                c = c.getSuperclass();
            }
        }
        throw new NoSuchFieldException(name);
    }

    private static void validator(StringBuilder out, ConfigDef.Validator v) throws Exception {
        if (v == null) {
            out.append("null");
            return;
        }
        out.append('{');
        if (v instanceof ConfigDef.Range) {
            field(out, "kind", "range");
            Object min = get(v, "min");
            Object max = get(v, "max");
            out.append(",\"min\":").append(min == null ? "null" : "\"" + min + "\"");
            out.append(",\"max\":").append(max == null ? "null" : "\"" + max + "\"");
        } else if (v instanceof ConfigDef.ValidString) {
            field(out, "kind", "one_of");
            out.append(',');
            strings(out, "values", (Collection<?>) get(v, "validStrings"));
        } else if (v instanceof ConfigDef.CaseInsensitiveValidString) {
            field(out, "kind", "one_of_ignore_case");
            out.append(',');
            strings(out, "values", (Collection<?>) get(v, "validStrings"));
        } else if (v instanceof ConfigDef.ValidList) {
            field(out, "kind", "list_of");
            out.append(',');
            ConfigDef.ValidString inner = (ConfigDef.ValidString) get(v, "validString");
            strings(out, "values", (Collection<?>) get(inner, "validStrings"));
            out.append(",\"empty_allowed\":").append(get(v, "isEmptyAllowed"));
        } else if (v instanceof ConfigDef.NonEmptyString) {
            field(out, "kind", "non_empty");
        } else {
            field(out, "kind", "other");
        }
        out.append(',');
        field(out, "text", v.toString());
        out.append('}');
    }

    private static void strings(StringBuilder out, String name, Collection<?> values) {
        List<String> sorted = new ArrayList<>();
        for (Object o : values) sorted.add(String.valueOf(o));
        out.append('"').append(name).append("\":[");
        for (int i = 0; i < sorted.size(); i++) {
            if (i > 0) out.append(',');
            string(out, sorted.get(i));
        }
        out.append(']');
    }

    private static void field(StringBuilder out, String name, String value) {
        out.append('"').append(name).append("\":");
        if (value == null) out.append("null");
        else string(out, value);
    }

    private static void string(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default:
                    if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
                    else out.append(c);
            }
        }
        out.append('"');
    }
}
