// unet-teach: set-up for the embedded widgets, loaded after require.js and before embed-amd.js
// (_config.yml, nb_ipywidgets_js). Written for this book; not fetched.
(function () {
  // 1. The embed script finds its fonts (Font Awesome, for icons) next to the module
  //    "@jupyter-widgets/html-manager/dist/...": map that to this folder, wherever the page is.
  var here = document.currentScript.src.replace(/\/[^/]*$/, "");
  window.require.config({paths: {"@jupyter-widgets/html-manager/dist": here}});

  // 2. Widgets typeset their labels with MathJax 2's MathJax.Hub.Queue, while the book runs
  //    MathJax 3, which has no Hub: give whatever window.MathJax becomes (the configuration
  //    object first, MathJax itself once it has loaded) a Hub that typesets the MathJax 3 way.
  function withHub(mathjax) {
    if (mathjax && typeof mathjax === "object" && !mathjax.Hub) {
      mathjax.Hub = {
        Queue: function (job) {
          var element = job && job[2];
          if (element && window.MathJax && window.MathJax.typesetPromise) {
            window.MathJax.typesetPromise([element]);
          }
        }
      };
    }
    return mathjax;
  }
  var current = withHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true, enumerable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); }
  });
})();
