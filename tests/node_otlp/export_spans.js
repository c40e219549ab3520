// An agent instrumented with OpenTelemetry's Node SDK and its OTLP/HTTP (protobuf) trace
// exporter, used as their documentation shows, with no endpoint in the code: the exporter
// reads OTEL_EXPORTER_OTLP_ENDPOINT. Prints the ids of the spans it made, as JSON.
'use strict';

const { SpanKind, SpanStatusCode, trace } = require('@opentelemetry/api');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { NodeTracerProvider, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-node');

async function main() {
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'node-agent', 'service.version': '1.2.3' }),
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter())],
  });
  provider.register(); // AsyncLocalStorage context: nesting follows the awaits
  const tracer = trace.getTracer('node-agent', '0.1.0');
  const ids = {};
  await tracer.startActiveSpan('invoke_agent planner', async (root) => {
    ids.trace = root.spanContext().traceId;
    ids.root = root.spanContext().spanId;
    const attributes = {
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-4o',
      'gen_ai.usage.input_tokens': 1200,
      'gen_ai.usage.output_tokens': 85,
    };
    await tracer.startActiveSpan('chat gpt-4o', { kind: SpanKind.CLIENT, attributes }, async (chat) => {
      ids.chat = chat.spanContext().spanId;
      await new Promise((resolve) => setTimeout(resolve, 5));
      chat.end();
    });
    await tracer.startActiveSpan('execute_tool search', async (tool) => {
      ids.tool = tool.spanContext().spanId;
      tool.recordException(new TypeError('query was empty'));
      tool.setStatus({ code: SpanStatusCode.ERROR, message: 'query was empty' });
      tool.end();
    });
    root.end();
  });
  await provider.shutdown(); // exports whatever is still on its way
  process.stdout.write(`${JSON.stringify(ids)}\n`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
