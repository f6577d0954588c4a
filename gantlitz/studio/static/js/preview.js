// Lit 3D preview: the server's .glb (the bundled head with this identity's albedo, specular and normal
// maps, written by the same exporter as the .glb download) in three.js, orbit controls, a movable key light.

import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { isAbort } from "./api.js";

export class Preview {
  constructor(element, fetcher, onError) {
    this.el = element;
    this.fetcher = fetcher;
    this.onError = onError;
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio);
    this.renderer.toneMapping = THREE.ACESFilmicToneMapping;
    element.appendChild(this.renderer.domElement);
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x202124);
    this.camera = new THREE.PerspectiveCamera(30, 1, 0.01, 100);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener("change", () => this.render());
    this.scene.add(new THREE.HemisphereLight(0xdde4ff, 0x302820, 0.35));
    this.key = new THREE.DirectionalLight(0xffffff, 2.6);
    this.fill = new THREE.DirectionalLight(0xc8d4ff, 0.5);
    this.scene.add(this.key, this.key.target, this.fill, this.fill.target);
    this.loader = new GLTFLoader();
    this.head = null;
    this.radius = 1;
    this.centre = new THREE.Vector3();
    this.azimuth = 35;
    this.elevation = 30;
    this.controller = null;
    new ResizeObserver(() => this.resize()).observe(element);
  }

  resize() {
    const { width, height } = this.el.getBoundingClientRect();
    if (!width || !height) return;
    this.renderer.setSize(width, height);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  // Load the head for an identity query; a newer call aborts an older one still loading.
  async show(query) {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.el.dataset.state = "loading";
    try {
      const buffer = await this.fetcher.get(`/api/preview.glb?${query}`, { signal: controller.signal, kind: "buffer" });
      const gltf = await this.loader.parseAsync(buffer, "");
      if (controller.signal.aborted) return;
      this.replace(gltf.scene);
      this.el.dataset.state = "ready";
      this.el.dataset.shown = String(Number(this.el.dataset.shown || 0) + 1);
    } catch (error) {
      if (!isAbort(error)) {
        this.el.dataset.state = "error";
        this.onError(error);
      }
    }
  }

  replace(head) {
    const first = this.head === null;
    if (this.head) {
      this.scene.remove(this.head);
      this.head.traverse((node) => {
        if (!node.isMesh) return;
        node.geometry.dispose();
        for (const value of Object.values(node.material)) if (value && value.isTexture) value.dispose();
        node.material.dispose();
      });
    }
    this.head = head;
    this.scene.add(head);
    if (first) this.frame(head);
    this.placeLights();
  }

  frame(head) {
    const sphere = new THREE.Box3().setFromObject(head).getBoundingSphere(new THREE.Sphere());
    // the face sits above the centre of a head-and-shoulders scan
    this.centre.copy(sphere.center).add(new THREE.Vector3(0, sphere.radius * 0.2, 0));
    this.radius = sphere.radius;
    this.camera.near = sphere.radius / 100;
    this.camera.far = sphere.radius * 100;
    this.camera.position.set(this.centre.x, this.centre.y, this.centre.z + sphere.radius * 2.8);
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(this.centre);
    this.controls.update();
  }

  // Key light at (azimuth, elevation) degrees around the head; the fill light opposite and low.
  setLight(azimuth, elevation) {
    this.azimuth = azimuth;
    this.elevation = elevation;
    this.placeLights();
  }

  placeLights() {
    const at = (az, el, light) => {
      const a = THREE.MathUtils.degToRad(az), e = THREE.MathUtils.degToRad(el);
      const d = this.radius * 4;
      light.position.set(this.centre.x + d * Math.cos(e) * Math.sin(a), this.centre.y + d * Math.sin(e),
        this.centre.z + d * Math.cos(e) * Math.cos(a));
      light.target.position.copy(this.centre);
    };
    at(this.azimuth, this.elevation, this.key);
    at(this.azimuth - 180, 10, this.fill);
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }
}
