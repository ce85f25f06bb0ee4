/**
 * The labels each metric gets in a package's source, read from its syntax tree: the keys of
 * every `Metric.withAttributes(METRIC, { ... })` and of a metric made with `attributes`
 * (`Metric.counter(METRIC.id, { attributes: { ... } })`). A helper that takes the metric, or
 * the labels, as a parameter (`observe(histogram, { role }, ms)`) is followed to its callers
 * in the same file; labels held in a local `const labels = { ... }` are read from it.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import ts from "typescript"

const metricMakers = new Set(["counter", "gauge", "histogram", "summary", "frequency", "timer"])

/** The `.ts` files under `directory`, recursively. */
const sources = (directory: string): Array<string> =>
  readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sources(join(directory, entry.name))
      : entry.name.endsWith(".ts")
        ? [join(directory, entry.name)]
        : [],
  )

const calleeName = (call: ts.CallExpression): string | undefined => {
  const callee = call.expression
  if (ts.isIdentifier(callee)) return callee.text
  if (ts.isPropertyAccessExpression(callee)) return callee.name.text
  return undefined
}

/** The function a node is in, with its name (a declared or `const NAME = (...) =>` one). */
const enclosingFunction = (
  node: ts.Node,
): { readonly name: string | undefined; readonly params: Array<string> } | undefined => {
  for (let at = node.parent; at !== undefined; at = at.parent) {
    if (ts.isArrowFunction(at) || ts.isFunctionExpression(at) || ts.isFunctionDeclaration(at)) {
      const params = at.parameters.map((param) => param.name.getText())
      if (ts.isFunctionDeclaration(at)) return { name: at.name?.text, params }
      const parent = at.parent
      const name =
        ts.isVariableDeclaration(parent) && ts.isIdentifier(parent.name)
          ? parent.name.text
          : undefined
      return { name, params }
    }
  }
  return undefined
}

/** A label a series is given, with its value when the code writes it as a string. */
interface Label {
  readonly name: string
  readonly value: string | undefined
}

interface Helper {
  readonly metricParam: number
  readonly labels: Array<Label>
  readonly labelsParam: number | undefined
}

/**
 * Every metric id of the package's source, with the names of the labels its series are given
 * (none: a metric recorded without labels), each with the values the code writes as strings.
 */
export const labelsInSource = (srcDirectory: string): Map<string, Map<string, Set<string>>> => {
  const files = sources(srcDirectory).map((path) =>
    ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true),
  )
  const walk = (node: ts.Node, visit: (node: ts.Node) => void) => {
    visit(node)
    node.forEachChild((child) => walk(child, visit))
  }

  // The metrics: `const NAME = Metric.counter("understudy_...", ...)`, by name.
  const idOf = new Map<string, string>()
  for (const file of files) {
    walk(file, (node) => {
      if (!ts.isVariableDeclaration(node) || !ts.isIdentifier(node.name)) return
      const init = node.initializer
      if (init === undefined || !ts.isCallExpression(init)) return
      const first = init.arguments[0]
      if (metricMakers.has(calleeName(init) ?? "") && first && ts.isStringLiteral(first)) {
        idOf.set(node.name.text, first.text)
      }
    })
  }
  const found = new Map<string, Map<string, Set<string>>>(
    [...idOf.values()].map((id) => [id, new Map()]),
  )
  /** `NAME`, `Metrics.NAME`, or `NAME.id`: the metric it names. */
  const resolve = (expression: ts.Expression | undefined): string | undefined => {
    if (expression === undefined) return undefined
    if (ts.isIdentifier(expression)) return idOf.get(expression.text)
    if (ts.isPropertyAccessExpression(expression)) {
      if (expression.name.text === "id") return resolve(expression.expression)
      return idOf.get(expression.name.text)
    }
    return undefined
  }
  const add = (id: string, labels: Iterable<Label>) => {
    const series = found.get(id)
    if (series === undefined) return
    for (const { name, value } of labels) {
      const values = series.get(name) ?? new Set<string>()
      if (value !== undefined) values.add(value)
      series.set(name, values)
    }
  }

  for (const file of files) {
    /** Object literals bound to a local name: `const labels = { side, reason }`. */
    const objects = new Map<string, ts.ObjectLiteralExpression>()
    walk(file, (node) => {
      if (
        ts.isVariableDeclaration(node) &&
        ts.isIdentifier(node.name) &&
        node.initializer !== undefined &&
        ts.isObjectLiteralExpression(node.initializer)
      ) {
        objects.set(node.name.text, node.initializer)
      }
    })
    /** The keys of labels given as an object, or a local name bound to one (not `params`). */
    const keysOf = (
      expression: ts.Expression | undefined,
      params: Array<string> = [],
    ): Array<Label> => {
      if (expression === undefined) return []
      if (ts.isIdentifier(expression)) {
        if (params.includes(expression.text)) return []
        const bound = objects.get(expression.text)
        return bound === undefined ? [] : keysOf(bound)
      }
      if (!ts.isObjectLiteralExpression(expression)) return []
      return expression.properties.flatMap((property) =>
        (ts.isPropertyAssignment(property) || ts.isShorthandPropertyAssignment(property)) &&
        property.name !== undefined &&
        (ts.isIdentifier(property.name) || ts.isStringLiteral(property.name))
          ? [
              {
                name: property.name.text,
                value:
                  ts.isPropertyAssignment(property) && ts.isStringLiteralLike(property.initializer)
                    ? property.initializer.text
                    : undefined,
              },
            ]
          : ts.isSpreadAssignment(property)
            ? keysOf(property.expression, params)
            : [],
      )
    }
    /** The parameter an expression (or an object literal's spread) passes on, by index. */
    const paramIndex = (
      expression: ts.Expression | undefined,
      params: Array<string>,
    ): number | undefined => {
      if (expression === undefined) return undefined
      if (ts.isIdentifier(expression)) {
        const index = params.indexOf(expression.text)
        return index < 0 ? undefined : index
      }
      if (ts.isObjectLiteralExpression(expression)) {
        for (const property of expression.properties) {
          if (ts.isSpreadAssignment(property)) {
            const index = paramIndex(property.expression, params)
            if (index !== undefined) return index
          }
        }
      }
      return undefined
    }

    const helpers = new Map<string, Helper>()
    walk(file, (node) => {
      if (!ts.isCallExpression(node)) return
      const name = calleeName(node)
      if (name === "withAttributes" && node.arguments.length === 2) {
        const [metric, attributes] = node.arguments
        const within = enclosingFunction(node)
        const labels = keysOf(attributes, within?.params)
        const id = resolve(metric)
        if (id !== undefined) return add(id, labels)
        const metricParam = within === undefined ? undefined : paramIndex(metric, within.params)
        if (within?.name !== undefined && metricParam !== undefined) {
          helpers.set(within.name, {
            metricParam,
            labels,
            labelsParam: paramIndex(attributes, within.params),
          })
        }
        return
      }
      // A metric made with its labels: `Metric.counter(operations.id, { attributes })`.
      if (metricMakers.has(name ?? "")) {
        const id = resolve(node.arguments[0])
        const options = node.arguments[1]
        if (id === undefined || options === undefined || !ts.isObjectLiteralExpression(options))
          return
        for (const property of options.properties) {
          if (
            ts.isPropertyAssignment(property) &&
            ts.isIdentifier(property.name) &&
            property.name.text === "attributes"
          ) {
            add(id, keysOf(property.initializer))
          }
        }
      }
    })
    walk(file, (node) => {
      if (!ts.isCallExpression(node)) return
      const helper = helpers.get(calleeName(node) ?? "")
      if (helper === undefined) return
      const id = resolve(node.arguments[helper.metricParam])
      if (id === undefined) return
      add(id, helper.labels)
      if (helper.labelsParam !== undefined) add(id, keysOf(node.arguments[helper.labelsParam]))
    })
  }
  return found
}

/**
 * The label names the page gives each metric: in the labels column, each `;`-separated part
 * names labels before its colon (`` `server`, `scope`: `server`, `pool` ``: server and
 * scope), or is only label names.
 */
export const labelsOnPage = (page: string): Map<string, Set<string>> => {
  const documented = new Map<string, Set<string>>()
  for (const [id, column] of labelColumns(page)) {
    const names = new Set<string>()
    for (const part of column.split(";")) {
      const colon = part.indexOf(":")
      const head = colon < 0 ? part : part.slice(0, colon)
      for (const name of head.matchAll(/`([\w-]+)`/g)) names.add(name[1]!)
    }
    documented.set(id, names)
  }
  return documented
}

/** Each metric row's labels column, by metric id. */
export const labelColumns = (page: string): Map<string, string> =>
  new Map(
    [...page.matchAll(/^\| `(understudy_\w+)` \| \w+ \|([^|]*)\|/gm)].map((match) => [
      match[1]!,
      match[2]!,
    ]),
  )
